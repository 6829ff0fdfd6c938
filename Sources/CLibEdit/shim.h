// BSD libedit (Debian's libedit-dev): line editing, history, completion. el_set and history are
// variadic, which Swift cannot call (and calling them through a fixed-arity pointer is undefined
// behaviour where variadic arguments travel differently, e.g. arm64 Apple): one fixed-arity
// wrapper per call the client makes, named after the operation, prefixed `parley_`. No policy.
#ifndef PARLEY_CLIBEDIT_SHIM_H
#define PARLEY_CLIBEDIT_SHIM_H
#include <stdio.h>
#include <histedit.h>

typedef char *(*parley_el_prompt_fn)(EditLine *);
typedef unsigned char (*parley_el_command_fn)(EditLine *, int);

static inline int parley_el_set_editor(EditLine *el, const char *mode) { return el_set(el, EL_EDITOR, mode); }
static inline int parley_el_set_signal(EditLine *el, int on) { return el_set(el, EL_SIGNAL, on); }
static inline int parley_el_set_prompt(EditLine *el, parley_el_prompt_fn fn) { return el_set(el, EL_PROMPT, fn); }
static inline int parley_el_set_history(EditLine *el, History *h) { return el_set(el, EL_HIST, history, h); }
static inline int parley_el_add_function(EditLine *el, const char *name, const char *help, parley_el_command_fn fn) {
    return el_set(el, EL_ADDFN, name, help, fn);
}
static inline int parley_el_bind(EditLine *el, const char *key, const char *function) {
    return el_set(el, EL_BIND, key, function, (const char *)NULL);
}
static inline int parley_el_refresh(EditLine *el) { return el_set(el, EL_REFRESH); }
static inline int parley_history_set_size(History *h, HistEvent *ev, int size) { return history(h, ev, H_SETSIZE, size); }
static inline int parley_history_enter(History *h, HistEvent *ev, const char *line) { return history(h, ev, H_ENTER, line); }
#endif
