# exewall — run `make help` for the targets. Kernel work needs root.
GO        ?= go
PREFIX    ?= /usr/local
BIN       := bin/exewall
GOOSES    := linux windows darwin

.PHONY: deps help build generate check-generated vet test fuzz soak run install uninstall clean bench bench-quick deb

help:
	@echo "make run              build and start the daemon in the foreground (root)"
	@echo "make test             set the machine up (Debian packages, bpffs), vet, then every test, kernel tests included (root)"
	@echo "make build            build $(BIN)"
	@echo "make generate         regenerate the eBPF objects (needs clang-14, llvm-14, libbpf-dev)"
	@echo "make check-generated  fail when the committed eBPF objects are stale"
	@echo "make install          install binary, systemd unit and example policy"
	@echo "make bench            benchmark exewall against nftables/iptables on this machine (root, ~8 min)"
	@echo "make bench-quick      the CI smoke run of the benchmark (root, < 2 min)"
	@echo "make deb              build dist/exewall_<version>_<arch>.deb"

build:
	$(GO) build -o $(BIN) ./cmd/exewall

# Debian 12's clang-14 is pinned by name in linux/gen.go so every machine
# emits byte-identical objects.
generate:
	cd linux && $(GO) generate ./...

check-generated: generate
	@git diff --exit-code --stat -- linux/ || { echo "generated eBPF objects are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- linux/)" || { git status --porcelain -- linux/; echo "generate left untracked files"; exit 1; }

# Every OS compiles, vets and builds its test binaries from Linux.
vet:
	@for os in $(GOOSES); do echo "go vet GOOS=$$os"; GOOS=$$os $(GO) vet ./... || exit 1; done
	@for os in windows darwin; do echo "test binaries GOOS=$$os"; GOOS=$$os $(GO) test -count=1 -exec /bin/true ./... >/dev/null || exit 1; done

# The benchmark's quick mode runs too, so the harness never rots (its
# figures are smoke, not evidence: see docs/BENCHMARKS.md).
# Debian packages the tests use (clang for `generate`, mkfs.btrfs, nft,
# iptables, bpftool...) and bpffs: installs only what is missing.
deps:
	@bash .ci/deps

test: deps vet
	@mkdir -p bin
	$(GO) run ./bench --quick --json bin/bench-quick.json --svg bin/bench-quick.svg > bin/bench-quick.md
	@grep -E '^\| .*\*\*(PASS|FAIL|SKIP)\*\*' bin/bench-quick.md || true
	$(MAKE) fuzz
	EXEWALL_SOAK_DURATION=$(SOAK) $(GO) test -count=1 -timeout 20m ./...

FUZZTIME ?= 10s
SOAK     ?= 20s

# Each fuzz target for $(FUZZTIME); `go test -fuzz` takes one target per run.
# Crashers land in testdata/fuzz and become regression tests.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./engine/
	$(GO) test -run '^$$' -fuzz '^FuzzParseDest$$' -fuzztime $(FUZZTIME) ./engine/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME) ./cmd/exewall/internal/api/

# The soak test alone (root): EXEWALL_SOAK_DURATION, 60s by default.
soak:
	$(GO) test -count=1 -v -run '^TestSoak$$' ./test/e2e/

run: build
	./$(BIN) daemon

# The example policy is installed beside, not as, the live policy: the daemon
# writes a harmless default (allow everything) on its first start.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/exewall
	install -D -m 0644 deploy/systemd/exewall.service $(DESTDIR)/etc/systemd/system/exewall.service
	install -D -m 0644 examples/policy.yaml $(DESTDIR)$(PREFIX)/share/exewall/policy.example.yaml
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable --now exewall; fi

uninstall:
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now exewall || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/exewall $(DESTDIR)/etc/systemd/system/exewall.service
	rm -rf $(DESTDIR)$(PREFIX)/share/exewall
	@echo "enforcement stays in the kernel until 'exewall reset'"

bench:
	$(GO) run ./bench

bench-quick:
	$(GO) run ./bench --quick

deb:
	$(GO) run ./deploy/deb -out dist

clean:
	rm -rf bin dist
