//go:build linux

#include "textflag.h"

// func hint()
TEXT ·hint(SB),NOSPLIT,$0-0
	YIELD
	RET
