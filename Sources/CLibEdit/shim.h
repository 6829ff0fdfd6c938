// Include-only header for BSD libedit (Debian's libedit-dev): line editing, history, completion.
#ifndef PARLEY_CLIBEDIT_SHIM_H
#define PARLEY_CLIBEDIT_SHIM_H
#include <stdio.h>
#include <histedit.h>
#endif
