package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push copies the image to ref (a repository, with or without a tag; the
// image's version is the tag when there is none) and returns the pushed
// reference by digest.
func Push(r *Result, ref string) (string, error) {
	n, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	tag, ok := n.(name.Tag)
	if !ok {
		return "", fmt.Errorf("push: %s names a digest; give a repository or a tag", ref)
	}
	if _, err := name.NewTag(ref, name.StrictValidation); err != nil {
		// No explicit tag: tag it with the version.
		tag = tag.Context().Tag(r.Version)
	}
	if err := remote.Write(tag, r.image, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("push %s: %w", tag, err)
	}
	return tag.Context().Digest(r.Digest).String(), nil
}

// digestLine is the digest: line of a kustomization's images: entry.
var digestLine = regexp.MustCompile(`(?m)^([ \t]+digest:[ \t]*)sha256:[0-9a-f]{64}([ \t]*(#.*)?)$`)

// Pin writes digest into the one digest: line of the kustomization at path,
// with note as its comment, leaving the rest of the file as it is.
func Pin(path, digest, note string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
		return fmt.Errorf("pin: %q is not a sha256 digest", digest)
	}
	if n := len(digestLine.FindAllIndex(data, -1)); n != 1 {
		return fmt.Errorf("pin: %s has %d `digest: sha256:...` lines, want 1", path, n)
	}
	line := "${1}" + digest
	if note != "" {
		line += " # " + strings.ReplaceAll(note, "$", "$$")
	}
	out := digestLine.ReplaceAll(data, []byte(line))
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, fi.Mode().Perm())
}
