package engine

// StatResolver is the portable Resolver, built on os.Stat: symlinks are
// followed and hard links share an identity, as with os.SameFile.
//
// On Unix the FileID is st_dev (converted to the kernel's major<<20|minor
// encoding on Linux; taken as is elsewhere, where no kernel program reads it)
// and st_ino, with Gen 0: stat(2) reports no generation, and on overlayfs or
// btrfs subvolumes its st_dev differs from what the kernel sees in
// exe_file, so the Linux backend brings its own Resolver.
//
// Elsewhere (Windows) a file is known by its path, as WFP knows an app: the
// FileID is a 64-bit FNV-1a hash of the cleaned absolute path (lower-cased on
// Windows, whose file names ignore case) in Ino, and ok is true even when the
// file does not exist yet. Hard links are then not recognised as one file.
type StatResolver struct{}

var _ Resolver = StatResolver{}
