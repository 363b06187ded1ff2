# exewall — run `make help` for the targets. Kernel work needs root.
# Go from PATH, else where the README says it is (sudo's and root's PATH
# on Debian do not hold /usr/local/go/bin).
GO        ?= $(shell command -v go || echo /usr/local/go/bin/go)
PREFIX    ?= /usr/local
BIN       := bin/exewall
GOOSES    := linux windows darwin
# Where `make deb` puts the package: DESTDIR when given, else dist/.
DIST      ?= dist
DEBDIR    := $(if $(DESTDIR),$(DESTDIR),$(DIST))
# Where `make image` writes the OCI layout and its tar: DESTDIR when given.
IMAGEDIR  := $(if $(DESTDIR),$(DESTDIR),bin/image)
# Extra arguments for the benchmark: make bench ARGS="--sections connect"
ARGS      ?=
# staticcheck, pinned (v0.8.2 is staticcheck 2026.2.2); built for this
# machine into bin/ and run with GOOS set for each OS.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/staticcheck-$(STATICCHECK_VERSION)

.PHONY: deps help build generate check-generated vet test fuzz soak run demo install uninstall clean bench bench-quick deb image

help:
	@echo "make demo             try exewall safely: a daemon on a scratch cgroup denies curl, then everything is removed (root)"
	@echo "make run              build and start the daemon in the foreground on the whole machine (root; enforcement stays after Ctrl-C)"
	@echo "make test             set the machine up (Debian packages, bpffs), vet, then every test, kernel tests included (root)"
	@echo "make build            build $(BIN)"
	@echo "make generate         regenerate the eBPF objects (needs clang-14, llvm-14, libbpf-dev)"
	@echo "make check-generated  fail when the committed eBPF objects are stale"
	@echo "make install          install $(PREFIX)/bin/exewall, the systemd unit and example policy, and enable and start the unit (root)"
	@echo "make bench            benchmark exewall against nftables/iptables on this machine (root, ~8 min; ARGS=... for its flags)"
	@echo "make bench-quick      the CI smoke run of the benchmark (root, < 2 min)"
	@echo "make deb              build $(DEBDIR)/exewall_<version>_<arch>.deb (DESTDIR=DIR puts it in DIR)"
	@echo "make image            build the OCI image: $(IMAGEDIR)/oci (layout) and $(IMAGEDIR)/exewall-oci.tar, print its digest"

build:
	@echo go build -o $(BIN) ./cmd/exewall
	@$(GO) build -o $(BIN) ./cmd/exewall

# Debian 12's clang-14 is pinned by name in linux/gen.go so every machine
# emits byte-identical objects.
generate:
	cd linux && $(GO) generate ./...

check-generated: generate
	@git diff --exit-code --stat -- linux/ || { echo "generated eBPF objects are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- linux/)" || { git status --porcelain -- linux/; echo "generate left untracked files"; exit 1; }

# Every OS compiles, vets, passes staticcheck and builds its test binaries
# from Linux.
vet: $(STATICCHECK)
	@for os in $(GOOSES); do echo "go vet GOOS=$$os"; GOOS=$$os $(GO) vet ./... || exit 1; done
	@for os in $(GOOSES); do echo "staticcheck GOOS=$$os"; GOOS=$$os $(STATICCHECK) ./... || exit 1; done
	@for os in windows darwin; do echo "test binaries GOOS=$$os"; GOOS=$$os $(GO) test -count=1 -exec /bin/true ./... >/dev/null || exit 1; done

$(STATICCHECK):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin/.staticcheck $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/.staticcheck/staticcheck $@ && rmdir bin/.staticcheck

# Debian packages the tests use (clang for `generate`, mkfs.btrfs, nft,
# iptables, bpftool...) and bpffs: installs only what is missing.
deps:
	@bash .ci/deps

# The benchmark's quick mode runs first, so the harness never rots: it must
# run to the end, but its PASS/FAIL lines are figures from a smoke run on a
# shared machine, printed for information, not the test verdict (see
# docs/BENCHMARKS.md). The verdict is the last line: what `go test` did.
test: deps vet
	@mkdir -p bin
	$(GO) run ./bench --quick --json bin/bench-quick.json --svg bin/bench-quick.svg > bin/bench-quick.md
	@echo "quick benchmark (information only, not part of the test verdict; full report in bin/bench-quick.md):"
	@grep -E '^\| .*\*\*(PASS|FAIL|SKIP)\*\*' bin/bench-quick.md | sed 's/^/  info: /' || true
	$(MAKE) fuzz
	@echo "go test -count=1 -timeout 20m ./..."
	@EXEWALL_SOAK_DURATION=$(SOAK) $(GO) test -count=1 -timeout 20m -json ./... | $(GO) run ./test/summary

FUZZTIME ?= 10s
SOAK     ?= 20s

# Each fuzz target for $(FUZZTIME); `go test -fuzz` takes one target per run.
# Crashers land in testdata/fuzz and become regression tests. A failed run
# is tried once more: Go 1.26's fuzz coordinator can fail a target with a
# bare "context deadline exceeded" at the end of -fuzztime on a loaded
# machine (go.dev/issue/75804, fixed in Go 1.27), while a real crasher is
# written to testdata/fuzz and fails the second run too.
fuzz_one = $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(FUZZTIME) $(2) || \
	{ echo "fuzz: $(1) failed; once more (a crasher, if one was found, is in testdata/fuzz and fails again)"; \
	  $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(FUZZTIME) $(2); }

fuzz:
	$(call fuzz_one,FuzzParse,./engine/)
	$(call fuzz_one,FuzzParseDest,./engine/)
	$(call fuzz_one,FuzzDecodeRequest,./cmd/exewall/internal/api/)

# The soak test alone (root): EXEWALL_SOAK_DURATION, 60s by default.
soak:
	$(GO) test -count=1 -v -run '^TestSoak$$' ./test/e2e/

# Production: the daemon on the cgroup v2 root judges every process on the
# machine, and its enforcement stays in the kernel after Ctrl-C (a restart
# adopts it; `./bin/exewall reset` removes it).
run: build
	@echo "exewall: attaching to the cgroup v2 root: every process on this machine is judged by /etc/exewall/policy.yaml."
	@echo "exewall: after Ctrl-C the rules stay enforced in the kernel; ./$(BIN) reset removes them. To only try it: make demo"
	./$(BIN) daemon

# Safe to try: everything on a scratch cgroup, removed at the end.
demo: build
	@bash examples/demo.sh ./$(BIN)

# The example policy is installed beside, not as, the live policy: the daemon
# writes a harmless default (allow everything) on its first start.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/exewall
	install -D -m 0644 deploy/systemd/exewall.service $(DESTDIR)/etc/systemd/system/exewall.service
	install -D -m 0644 examples/policy.yaml $(DESTDIR)$(PREFIX)/share/exewall/policy.example.yaml
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable --now exewall && \
		echo "exewall.service is enabled and running: it judges every process on this machine, now and at every boot"; fi

uninstall:
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now exewall || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/exewall $(DESTDIR)/etc/systemd/system/exewall.service
	rm -rf $(DESTDIR)$(PREFIX)/share/exewall
	@echo "enforcement stays in the kernel until 'exewall reset'"

bench:
	$(GO) run ./bench $(ARGS)

bench-quick:
	$(GO) run ./bench --quick $(ARGS)

deb:
	$(GO) run ./deploy/deb -out $(DEBDIR)

# Reproducible: the same commit gives the same digest (docs/operations.md).
image:
	$(GO) run ./deploy/image -out $(IMAGEDIR)

clean:
	rm -rf bin $(DIST)
