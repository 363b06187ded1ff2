/* BPF targets have no asm/ of their own; the generic types are the same on every arch. */
#include <asm-generic/types.h>
