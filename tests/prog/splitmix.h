/*
 * splitmix64: a small, fast PRNG, so that test programs reproduce the same
 * sequence from the same seed on every machine.
 */
#ifndef RKFS_TEST_SPLITMIX_H
#define RKFS_TEST_SPLITMIX_H

#include <stdint.h>

static inline uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#endif
