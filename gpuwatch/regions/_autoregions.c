/* `gpuwatch run`'s hooks (gpuwatch/autoregions.py) in C, part of gpuwatch.regions._native;
 * their Python reference is gpuwatch/regions/gaps.py (GapRegions, RangeHook).
 *
 * After an idle gap the host runs every line several times slower (cold caches and branch
 * predictors), and the program pays for each line gpuwatch runs at its inference: measured on
 * this project's CPU, an NVTX push/pop pair through Python wrappers cost 87 us after 20 ms
 * gaps against 19 us bare (benchmarks/run_host_cost.py). So the regions found in a program
 * that does not mark them for gpuwatch open and close here, with no Python frame of gpuwatch's
 * in the common case; the rare cases call back into Python.
 *
 *   g = GapRegions(edges_ms, labels, counts, names, kind)
 * The found regions' state: `depth` (regions open: the outermost is timed, the ones inside it
 * only counted, so that every push is matched by a pop), when the last one ended
 * (`last_end_ns`, CLOCK_MONOTONIC ns, -1: none yet) and an iteration count per gap condition.
 * The condition of a region is the bucket of its gap (the idle host time since the last region
 * ended): labels[i] for edges_ms[i] <= gap < edges_ms[i + 1] (bisect_right), labels[-1]
 * ("first") for the first region. counts[key] += 1 for each region found; names maps a module
 * class to its region name. g.arm(timed, fs, open_slow, close_slow) gives it the session's
 * timer: timed(kind, name, labels, fn, args, kwargs, None, None) times a call
 * (RegionTimer.fast), fs is the FastRegion (None: no C path) whose begin/end time a range,
 * open_slow(kind, name, labels) -> p (None: no session) and close_slow(p, error) the slow path.
 * While `live` is 0 everything passes through untimed.
 *     g.labels()                 -> (condition, gap_ms, iteration, warmup, None) of a region
 *                                   starting now (it is counted in its condition)
 *     g.ended()                  the outermost region ended now
 *     g.begin(name, key)         -> bool: open a region (False: nested, or not live)
 *     g.end(error)               close it (error: the program's exception, or None)
 *     g.call(name, key, fn, args, kwargs[, handle, source])
 *                                -> fn(*args, **kwargs), as one region unless nested, on
 *                                   stream `handle` (None: where the program's work goes)
 *     g.mine()                   -> bool: a region is open on this thread
 *     g.close_open(error)        end the region left open, however deeply nested
 * `depth` and `owner` are read-only: GapRegions alone opens and closes the hooks' regions.
 *
 *   RangeHook(g, orig, prefix, key)   a push: orig(*a, **k), then g.begin(prefix + message, key)
 *   RangeHook(g, orig, None, None)    a pop: g.end(error), then orig(*a, **k); error: the
 *                                     exception being handled, if any (a pop in a `finally`)
 * (The push before the start event and the pop after the end event: only the program's work
 * between the events.) The message is the first argument, or message= or msg=; "range" when
 * there is none or it is None.
 *
 *   NestedCall(orig, outer[, g])      torch.nn.Module.__call__ (see below)
 */
#include "_native.h"
#include <pythread.h>

#define GAP_MAX_EDGES 15

typedef struct {
    PyObject_HEAD
    int depth, live, open_in_c, n_edges;
    unsigned long owner;                      /* the thread whose region is open */
    long long concurrent;                     /* ranges and calls of other threads meanwhile */
    PyObject *foreign;                        /* {thread: ranges it pushed meanwhile, open} */
    long long last_end_ns;
    double edges_ms[GAP_MAX_EDGES];
    long long iterations[GAP_MAX_EDGES + 1];  /* per condition; [n_edges]: "first" */
    PyObject *labels;                         /* n_edges condition names, then "first" */
    PyObject *counts, *names, *kind;
    PyObject *timed, *fs, *open_slow, *close_slow;  /* fs: a FastRegion or NULL */
    PyObject *open;                           /* the slow path's open region */
} GapRegions;

static PyObject *S_call, *S_range;

static PyObject *
gaps_labels(GapRegions *g)
{
    int idx;
    PyObject *gap;
    if (g->last_end_ns < 0) {
        idx = g->n_edges;
        gap = Py_None;
        Py_INCREF(gap);
    }
    else {
        double ms = (double)(now_ns() - g->last_end_ns) / 1e6;
        int k = 0;
        while (k < g->n_edges && g->edges_ms[k] <= ms)
            k++;
        idx = k > 0 ? k - 1 : 0;
        if ((gap = PyFloat_FromDouble(ms)) == NULL)
            return NULL;
    }
    PyObject *it = PyLong_FromLongLong(g->iterations[idx]);
    if (it == NULL) {
        Py_DECREF(gap);
        return NULL;
    }
    g->iterations[idx]++;
    PyObject *t = PyTuple_Pack(5, PyTuple_GET_ITEM(g->labels, idx), gap, it,
                               gap == Py_None ? Py_True : Py_False, Py_None);
    Py_DECREF(gap);
    Py_DECREF(it);
    return t;
}

static int
gaps_count(GapRegions *g, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(g->counts, key);  /* borrowed */
    long long n = 0;
    if (v == NULL && PyErr_Occurred())
        return -1;
    if (v != NULL && (n = PyLong_AsLongLong(v)) == -1 && PyErr_Occurred())
        return -1;
    PyObject *nv = PyLong_FromLongLong(n + 1);
    if (nv == NULL)
        return -1;
    int rc = PyDict_SetItem(g->counts, key, nv);
    Py_DECREF(nv);
    return rc;
}

/* Another thread's work while a region is open (NVTX ranges are per thread, and one region is
 * open at a time): its pushes and pops, and its model calls, are counted apart, never in the
 * open region's depth, and run untimed. delta +1, -1 or 0; returns the count before (-1:
 * error). */
static long
gaps_foreign(GapRegions *g, unsigned long me, int delta)
{
    PyObject *k = PyLong_FromUnsignedLong(me);
    if (k == NULL)
        return -1;
    PyObject *v = PyDict_GetItemWithError(g->foreign, k);  /* borrowed */
    long n = v == NULL ? 0 : PyLong_AsLong(v);
    if ((v == NULL && PyErr_Occurred()) || (n == -1 && PyErr_Occurred())) {
        Py_DECREF(k);
        return -1;
    }
    if (delta == 0) {
        Py_DECREF(k);
        return n;
    }
    int rc;
    if (n + delta <= 0)
        rc = v == NULL ? 0 : PyDict_DelItem(g->foreign, k);
    else {
        PyObject *nv = PyLong_FromLong(n + delta);
        rc = nv == NULL ? -1 : PyDict_SetItem(g->foreign, k, nv);
        Py_XDECREF(nv);
    }
    Py_DECREF(k);
    return rc < 0 ? -1 : n;
}

/* For thread `me` (with a region open, or another thread's untimed work going on): 1 nested in
 * its own region, 2 inside its own untimed work, 3 another thread's region is open (this is a
 * new piece of untimed work), 0 free to open a region, -1 error. */
static int
gaps_where(GapRegions *g, unsigned long me)
{
    if (g->depth && me == g->owner)
        return 1;
    long n = PyDict_GET_SIZE(g->foreign) ? gaps_foreign(g, me, 0) : 0;
    if (n < 0)
        return -1;
    if (n > 0)
        return 2;
    return g->depth ? 3 : 0;
}

/* This thread's untimed work while another thread's region is open (counted once, in
 * `concurrent`): gaps_untimed_begin, the call, then gaps_untimed_end with its result, which
 * it returns (NULL with the call's error kept, or an error of its own). */
static int
gaps_untimed_begin(GapRegions *g, unsigned long me)
{
    g->concurrent++;
    return gaps_foreign(g, me, 1) < 0 ? -1 : 0;
}

static PyObject *
gaps_untimed_end(GapRegions *g, unsigned long me, PyObject *out)
{
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    if (gaps_foreign(g, me, -1) < 0) {
        Py_XDECREF(out);
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        return NULL;
    }
    PyErr_Restore(et, ev, tb);
    return out;
}

/* 1: opened, 0: not (nested, another thread's region open, not live, no session), -1: error */
static int
gaps_begin(GapRegions *g, PyObject *name, PyObject *key)
{
    if (!g->live && !g->depth)
        return 0;
    if (g->depth || PyDict_GET_SIZE(g->foreign)) {
        unsigned long me = PyThread_get_thread_ident();
        switch (gaps_where(g, me)) {
        case -1:
            return -1;
        case 1:  /* nested in its own region: counted in its depth */
            g->depth++;
            return 0;
        case 3:  /* another thread's region is open: not timed (one region at a time) */
            g->concurrent++;
            /* fall through */
        case 2:
            return gaps_foreign(g, me, 1) < 0 ? -1 : 0;
        }
    }
    if (!g->live)
        return 0;
    PyObject *labels = gaps_labels(g);
    if (labels == NULL)
        return -1;
    g->depth = 1;
    int rc = 0;
    if (g->fs != NULL)
        rc = fast_begin_impl(g->fs, g->kind, name, labels, Py_None, Py_None);
    g->owner = PyThread_get_thread_ident();
    if (rc == 1)
        g->open_in_c = 1;
    else if (rc == 0) {
        PyObject *a[3] = {g->kind, name, labels};
        PyObject *p = PyObject_Vectorcall(g->open_slow, a, 3, NULL);
        if (p == NULL)
            rc = -1;
        else if (p == Py_None) {  /* the session is closed: nothing opened */
            Py_DECREF(p);
            Py_DECREF(labels);
            g->depth = 0;
            return 0;
        }
        else {
            Py_XSETREF(g->open, p);
            rc = 1;
        }
    }
    Py_DECREF(labels);
    if (rc < 0) {
        g->depth = 0;
        /* a failed start event: its row says so, so it counts (a Ctrl-C or SIGTERM before the
         * region began leaves no row) */
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            if (gaps_count(g, key) < 0)
                PyErr_Clear();
            PyErr_Restore(et, ev, tb);
        }
        return -1;
    }
    return gaps_count(g, key) < 0 ? -1 : 1;
}

/* A new reference (None, or what the timer's end returned) or NULL */
static PyObject *
gaps_end(GapRegions *g, PyObject *error)
{
    int depth = g->depth;
    if (PyDict_GET_SIZE(g->foreign) > 0 || (depth && PyThread_get_thread_ident() != g->owner)) {
        unsigned long me = PyThread_get_thread_ident();
        long n = gaps_foreign(g, me, -1);  /* this thread's own range, pushed meanwhile */
        if (n < 0)
            return NULL;
        if (n > 0 || (depth && me != g->owner))
            Py_RETURN_NONE;
    }
    if (depth > 1)
        g->depth = depth - 1;
    if (depth != 1)
        Py_RETURN_NONE;
    PyObject *res;
    if (g->open_in_c) {  /* (the end event first: only the program's work before it) */
        g->open_in_c = 0;
        res = fast_end(g->fs, error);
    }
    else if (g->open != NULL) {
        PyObject *p = g->open;
        g->open = NULL;
        PyObject *a[2] = {p, error};
        res = PyObject_Vectorcall(g->close_slow, a, 2, NULL);
        Py_DECREF(p);
    }
    else {
        res = Py_None;
        Py_INCREF(res);
    }
    g->depth = 0;
    g->last_end_ns = now_ns();
    return res;
}

/* fn(*args, **kwargs) (args a tuple, kwargs a dict or NULL) as one region, unless nested; on
 * stream `handle` (None: where the program's work goes), which came from `source` (None or a
 * streams.StreamRef source) */
static PyObject *
gaps_call(GapRegions *g, PyObject *name, PyObject *key, PyObject *fn, PyObject *args,
          PyObject *kwargs, PyObject *handle, PyObject *source)
{
    if (!g->live || g->timed == NULL)
        return PyObject_Call(fn, args, kwargs);
    if (g->depth || PyDict_GET_SIZE(g->foreign)) {
        unsigned long me = PyThread_get_thread_ident();
        int where = gaps_where(g, me);
        if (where < 0)
            return NULL;
        if (where == 3) {  /* another thread's region is open: untimed, counted */
            if (gaps_untimed_begin(g, me) < 0)
                return NULL;
            return gaps_untimed_end(g, me, PyObject_Call(fn, args, kwargs));
        }
        if (where > 0)
            return PyObject_Call(fn, args, kwargs);
    }
    PyObject *labels = gaps_labels(g);
    if (labels == NULL)
        return NULL;
    g->depth = 1;
    g->owner = PyThread_get_thread_ident();
    if (gaps_count(g, key) < 0) {
        g->depth = 0;
        Py_DECREF(labels);
        return NULL;
    }
    PyObject *a[8] = {g->kind, name, labels, fn, args, kwargs ? kwargs : Py_None, handle,
                      source};
    PyObject *out = PyObject_Vectorcall(g->timed, a, 8, NULL);
    g->depth = 0;
    g->last_end_ns = now_ns();
    Py_DECREF(labels);
    return out;
}

static PyObject *
gaps_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *edges, *labels, *counts, *names, *kind;
    if (!PyArg_ParseTuple(args, "O!O!O!O!U:GapRegions", &PyTuple_Type, &edges, &PyTuple_Type,
                          &labels, &PyDict_Type, &counts, &PyDict_Type, &names, &kind))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(edges);
    if (n < 1 || n > GAP_MAX_EDGES || PyTuple_GET_SIZE(labels) != n + 1) {
        PyErr_Format(PyExc_ValueError, "GapRegions: 1 to %d edges, and one label more (first)",
                     GAP_MAX_EDGES);
        return NULL;
    }
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(labels, i))) {
            PyErr_SetString(PyExc_TypeError, "GapRegions: labels are strings");
            return NULL;
        }
    }
    GapRegions *g = (GapRegions *)type->tp_alloc(type, 0);
    if (g == NULL)
        return NULL;
    g->n_edges = (int)n;
    g->last_end_ns = -1;
    if ((g->foreign = PyDict_New()) == NULL) {
        Py_DECREF(g);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        g->edges_ms[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(edges, i));
        if (g->edges_ms[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(g);
            return NULL;
        }
    }
    PyObject *own[4] = {labels, counts, names, kind};
    for (int i = 0; i < 4; i++)
        Py_INCREF(own[i]);
    g->labels = labels;
    g->counts = counts;
    g->names = names;
    g->kind = kind;
    return (PyObject *)g;
}

static PyObject *
gaps_arm(GapRegions *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "arm(timed, fs, open_slow, close_slow)");
        return NULL;
    }
    if (!PyCallable_Check(args[0]) || !PyCallable_Check(args[2]) ||
        !PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "arm: timed, open_slow and close_slow are callables");
        return NULL;
    }
    PyObject *fs = Py_TYPE(args[1]) == &FastRegionType ? args[1] : NULL;
    Py_INCREF(args[0]);
    Py_XSETREF(g->timed, args[0]);
    Py_XINCREF(fs);
    Py_XSETREF(g->fs, fs);
    Py_INCREF(args[2]);
    Py_XSETREF(g->open_slow, args[2]);
    Py_INCREF(args[3]);
    Py_XSETREF(g->close_slow, args[3]);
    Py_RETURN_NONE;
}

static PyObject *
gaps_labels_m(GapRegions *g, PyObject *unused)
{
    return gaps_labels(g);
}

static PyObject *
gaps_ended_m(GapRegions *g, PyObject *unused)
{
    g->last_end_ns = now_ns();
    Py_RETURN_NONE;
}

static int
gaps_armed(GapRegions *g)
{
    if (g->live && (g->timed == NULL || g->open_slow == NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "GapRegions: live before arm()");
        return 0;
    }
    return 1;
}

static PyObject *
gaps_begin_m(GapRegions *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "begin(name, key)");
        return NULL;
    }
    if (!gaps_armed(g))
        return NULL;
    int rc = gaps_begin(g, args[0], args[1]);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyObject *
gaps_end_m(GapRegions *g, PyObject *error)
{
    return gaps_end(g, error);
}

static PyObject *
gaps_call_m(GapRegions *g, PyObject *const *args, Py_ssize_t nargs)
{
    if ((nargs != 5 && nargs != 7) || !PyTuple_Check(args[3]) ||
        (args[4] != Py_None && !PyDict_Check(args[4])) ||
        (nargs == 7 && ((args[5] != Py_None && !PyLong_Check(args[5])) ||
                        (args[6] != Py_None && !PyUnicode_Check(args[6]))))) {
        PyErr_SetString(PyExc_TypeError, "call(name, key, fn, args: tuple, kwargs: dict|None"
                        "[, handle: int|None, source: str|None])");
        return NULL;
    }
    if (!gaps_armed(g))
        return NULL;
    return gaps_call(g, args[0], args[1], args[2], args[3], args[4] == Py_None ? NULL : args[4],
                     nargs == 7 ? args[5] : Py_None, nargs == 7 ? args[6] : Py_None);
}

static PyObject *
gaps_mine_m(GapRegions *g, PyObject *unused)
{
    /* is a region open on this thread (so that a call here is nested in it)? */
    return PyBool_FromLong(g->depth > 0 && PyThread_get_thread_ident() == g->owner);
}

static PyObject *
gaps_close_open_m(GapRegions *g, PyObject *error)
{
    /* the program ended, raised or was stopped inside a region: end it, however deeply
     * nested, from whichever thread (its ranges never popped) */
    if (g->depth > 1)
        g->depth = 1;
    g->owner = PyThread_get_thread_ident();
    return gaps_end(g, error);
}

static PyObject *
gaps_busy_m(GapRegions *g, PyObject *unused)
{
    /* may this thread not open a region now (nested, or inside untimed work)? */
    if (!g->depth && !PyDict_GET_SIZE(g->foreign))
        Py_RETURN_FALSE;
    int where = gaps_where(g, PyThread_get_thread_ident());
    return where < 0 ? NULL : PyBool_FromLong(where > 0);
}

static PyObject *
gaps_is_open(GapRegions *g, void *unused)
{
    return PyBool_FromLong(g->open_in_c || g->open != NULL);
}

static int
gaps_traverse(GapRegions *g, visitproc visit, void *arg)
{
    Py_VISIT(g->labels);
    Py_VISIT(g->counts);
    Py_VISIT(g->names);
    Py_VISIT(g->kind);
    Py_VISIT(g->timed);
    Py_VISIT(g->fs);
    Py_VISIT(g->open_slow);
    Py_VISIT(g->close_slow);
    Py_VISIT(g->open);
    Py_VISIT(g->foreign);
    return 0;
}

static int
gaps_clear(GapRegions *g)
{
    g->live = 0;  /* (cleared: everything passes through) */
    g->open_in_c = 0;
    Py_CLEAR(g->timed);
    Py_CLEAR(g->fs);
    Py_CLEAR(g->open_slow);
    Py_CLEAR(g->close_slow);
    Py_CLEAR(g->open);
    Py_CLEAR(g->counts);
    Py_CLEAR(g->names);
    return 0;  /* (labels and kind are strings: no cycle through them; kept for gaps_labels) */
}

static void
gaps_dealloc(GapRegions *g)
{
    PyObject_GC_UnTrack(g);
    gaps_clear(g);
    Py_CLEAR(g->labels);
    Py_CLEAR(g->kind);
    Py_CLEAR(g->foreign);
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyMemberDef gaps_members[] = {
    {"depth", T_INT, offsetof(GapRegions, depth), READONLY,
     "regions open (the outermost is timed, the others only counted)"},
    {"live", T_INT, offsetof(GapRegions, live), 0, "0: every call passes through untimed"},
    {"owner", T_ULONG, offsetof(GapRegions, owner), READONLY,
     "the thread (threading.get_ident()) whose region is open"},
    {"concurrent", T_LONGLONG, offsetof(GapRegions, concurrent), READONLY,
     "ranges and calls of other threads while a region was open: not timed"},
    {"last_end_ns", T_LONGLONG, offsetof(GapRegions, last_end_ns), 0,
     "when the last region ended (CLOCK_MONOTONIC ns; -1: none yet)"},
    {NULL},
};

static PyGetSetDef gaps_getset[] = {
    {"is_open", (getter)gaps_is_open, NULL, "whether the outermost region is open", NULL},
    {NULL},
};

static PyMethodDef gaps_methods[] = {
    {"arm", (PyCFunction)(void (*)(void))gaps_arm, METH_FASTCALL,
     "arm(timed, fs, open_slow, close_slow): the session's timer (see _autoregions.c)"},
    {"labels", (PyCFunction)gaps_labels_m, METH_NOARGS,
     "labels() -> (condition, gap_ms, iteration, warmup, None) of a region starting now"},
    {"ended", (PyCFunction)gaps_ended_m, METH_NOARGS, "ended(): the outermost region ended now"},
    {"busy", (PyCFunction)gaps_busy_m, METH_NOARGS,
     "busy() -> bool: this thread may not open a region now (one is open, or its own untimed "
     "work while another thread's was)"},
    {"begin", (PyCFunction)(void (*)(void))gaps_begin_m, METH_FASTCALL,
     "begin(name, key) -> bool: open a region unless one is open"},
    {"end", (PyCFunction)gaps_end_m, METH_O, "end(error): close the region begin() opened"},
    {"call", (PyCFunction)(void (*)(void))gaps_call_m, METH_FASTCALL,
     "call(name, key, fn, args, kwargs[, handle, source]) -> fn(*args, **kwargs), one region "
     "unless nested (on stream handle; None: where the program's work goes)"},
    {"mine", (PyCFunction)gaps_mine_m, METH_NOARGS,
     "mine() -> bool: a region is open on this thread"},
    {"close_open", (PyCFunction)gaps_close_open_m, METH_O,
     "close_open(error): end the region left open, however deeply nested, from any thread"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GapRegionsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gpuwatch.regions._native.GapRegions",
    .tp_basicsize = sizeof(GapRegions),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "GapRegions(edges_ms, labels, counts, names, kind): gpuwatch run's found "
              "regions (see gpuwatch/regions/_autoregions.c)",
    .tp_new = gaps_new,
    .tp_dealloc = (destructor)gaps_dealloc,
    .tp_traverse = (traverseproc)gaps_traverse,
    .tp_clear = (inquiry)gaps_clear,
    .tp_members = gaps_members,
    .tp_getset = gaps_getset,
    .tp_methods = gaps_methods,
};

/* RangeHook: NVTX push and pop functions put in the library's module (see the top). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    GapRegions *g;
    PyObject *orig, *prefix, *key;  /* prefix NULL: a pop */
    PyObject *last_msg, *last_name; /* the last message (a str) and its region name */
} RangeHook;

static PyObject *
range_name(RangeHook *h, PyObject *const *args, Py_ssize_t n, PyObject *kwnames)
{
    PyObject *msg = n > 0 ? args[0] : NULL;
    Py_ssize_t nk = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; msg == NULL && i < nk; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "message") == 0 ||
            PyUnicode_CompareWithASCIIString(k, "msg") == 0)
            msg = args[n + i];
    }
    if (msg != NULL && msg == h->last_msg) {  /* (a literal: the same object every time) */
        Py_INCREF(h->last_name);
        return h->last_name;
    }
    PyObject *text;
    if (msg == NULL || msg == Py_None) {
        text = S_range;
        Py_INCREF(text);
    }
    else if ((text = PyObject_Str(msg)) == NULL)
        return NULL;
    PyObject *name = PyUnicode_Concat(h->prefix, text);
    Py_DECREF(text);
    if (name != NULL && msg != NULL && PyUnicode_CheckExact(msg)) {
        Py_INCREF(msg);
        Py_XSETREF(h->last_msg, msg);
        Py_INCREF(name);
        Py_XSETREF(h->last_name, name);
    }
    return name;
}

/* Is the exception being handled as a range pops an error of the region's? Not a generator
 * closed (GeneratorExit), nor sys.exit(0) or sys.exit(). */
static int
range_error(PyObject *ev)
{
    if (PyErr_GivenExceptionMatches(ev, PyExc_GeneratorExit))
        return 0;
    if (PyErr_GivenExceptionMatches(ev, PyExc_SystemExit)) {
        PyObject *code = PyObject_GetAttrString(ev, "code");
        if (code == NULL) {
            PyErr_Clear();
            return 1;
        }
        int ok = code == Py_None || (PyLong_Check(code) && PyLong_AsLong(code) == 0);
        Py_DECREF(code);
        return !ok;
    }
    return 1;
}

static PyObject *
range_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    RangeHook *h = (RangeHook *)self;
    GapRegions *g = h->g;
    if (g == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RangeHook: cleared");
        return NULL;
    }
    if (h->prefix == NULL) {  /* pop: the end event first, then the program's pop */
        /* an exception being handled is the region's error: a pop in a `finally` as the
         * exception passes (torch.cuda.nvtx.range's), or in an `except` */
        PyObject *et, *ev, *tb;
        PyErr_GetExcInfo(&et, &ev, &tb);
        PyObject *res = gaps_end(g, ev != NULL && range_error(ev) ? ev : Py_None);
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        et = ev = tb = NULL;
        if (res == NULL)
            PyErr_Fetch(&et, &ev, &tb);  /* (the row is kept; the pop still runs) */
        else
            Py_DECREF(res);
        PyObject *out = PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
        if (res == NULL) {
            if (out == NULL) {  /* the program's own error wins */
                Py_XDECREF(et);
                Py_XDECREF(ev);
                Py_XDECREF(tb);
                return NULL;
            }
            Py_DECREF(out);
            PyErr_Restore(et, ev, tb);
            return NULL;
        }
        return out;
    }
    PyObject *out = PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
    if (out == NULL)
        return NULL;
    if (g->depth && g->owner == PyThread_get_thread_ident()) {  /* nested: counted only */
        g->depth++;
        return out;
    }
    if (!g->live)
        return out;
    PyObject *name = range_name(h, args, PyVectorcall_NARGS(nargsf), kwnames);
    int rc = name == NULL ? -1 : gaps_begin(g, name, h->key);
    Py_XDECREF(name);
    if (rc < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *
range_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *g, *orig, *prefix, *key;
    if (!PyArg_ParseTuple(args, "O!OOO:RangeHook", &GapRegionsType, &g, &orig, &prefix, &key))
        return NULL;
    if (!PyCallable_Check(orig) || (prefix != Py_None && !PyUnicode_Check(prefix)) ||
        ((prefix == Py_None) != (key == Py_None))) {
        PyErr_SetString(PyExc_TypeError, "RangeHook(g, orig, prefix: str, key) for a push, "
                        "RangeHook(g, orig, None, None) for a pop");
        return NULL;
    }
    RangeHook *h = (RangeHook *)type->tp_alloc(type, 0);
    if (h == NULL)
        return NULL;
    h->vectorcall = range_vectorcall;
    Py_INCREF(g);
    Py_INCREF(orig);
    h->g = (GapRegions *)g;
    h->orig = orig;
    if (prefix != Py_None) {
        Py_INCREF(prefix);
        Py_INCREF(key);
        h->prefix = prefix;
        h->key = key;
    }
    return (PyObject *)h;
}

static int
range_traverse(RangeHook *h, visitproc visit, void *arg)
{
    Py_VISIT(h->g);
    Py_VISIT(h->orig);
    return 0;
}

static int
range_clear(RangeHook *h)
{
    Py_CLEAR(h->g);
    Py_CLEAR(h->orig);
    return 0;
}

static void
range_dealloc(RangeHook *h)
{
    PyObject_GC_UnTrack(h);
    range_clear(h);
    Py_CLEAR(h->prefix);
    Py_CLEAR(h->key);
    Py_CLEAR(h->last_msg);
    Py_CLEAR(h->last_name);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static PyMemberDef range_members[] = {
    {"orig", T_OBJECT, offsetof(RangeHook, orig), READONLY, "the function it stands in for"},
    {NULL},
};

static PyTypeObject RangeHookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gpuwatch.regions._native.RangeHook",
    .tp_basicsize = sizeof(RangeHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "RangeHook(g, orig, prefix, key): an NVTX push (prefix None: a pop) that opens "
              "(closes) a region of GapRegions g (see gpuwatch/regions/_autoregions.c)",
    .tp_new = range_new,
    .tp_dealloc = (destructor)range_dealloc,
    .tp_traverse = (traverseproc)range_traverse,
    .tp_clear = (inquiry)range_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(RangeHook, vectorcall),
    .tp_members = range_members,
};

/* NestedCall(orig, outer[, g]): a callable to put in a class's __call__ (gpuwatch run puts it
 * in torch.nn.Module's). While no region is open (the depth, g's if given, is 0), a call
 * `obj(*args, **kwargs)` is one region: with g live and obj's class named in g's `names`,
 * g.call(name, "call", orig, (obj, *args), kwargs) here in C; else `outer(orig, (obj, *args),
 * kwargs)` (Python: names the class, then the same). While a region is open (depth > 0) it
 * goes straight to `orig`, torch's own __call__, with no Python frame of gpuwatch's: a model's
 * submodule calls, inside the region's events, cost one vectorcall more each, not a Python
 * function call. It binds as a method (Py_TPFLAGS_METHOD_DESCRIPTOR: instance calls pass
 * `self` first, unbound, as a function's). */
typedef struct {
    PyObject_HEAD
    PyObject *orig;
    PyObject *outer;
    GapRegions *g;  /* NULL: `depth` below is the depth */
    int depth;
    vectorcallfunc vectorcall;
} NestedCall;

static PyObject *
nested_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    NestedCall *h = (NestedCall *)self;
    GapRegions *g = h->g;
    if (h->orig == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NestedCall: cleared");
        return NULL;
    }
    if (g == NULL) {
        if (h->depth > 0)
            return PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
    }
    else if (g->depth > 0 || (g->live && PyDict_GET_SIZE(g->foreign))) {
        unsigned long me = PyThread_get_thread_ident();
        if (g->depth > 0 && me == g->owner)  /* a submodule: straight to torch's own */
            return PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
        int where = g->live ? gaps_where(g, me) : 1;
        if (where < 0)
            return NULL;
        if (where == 3)  /* another thread's model call while a region is open */
            return gaps_untimed_begin(g, me) < 0 ? NULL : gaps_untimed_end(
                g, me, PyObject_Vectorcall(h->orig, args, nargsf, kwnames));
        if (where > 0)
            return PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
    }
    /* the call as data: (obj, *args) and kwargs */
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    PyObject *kw = NULL;
    Py_ssize_t nk = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nk > 0 || g == NULL || !g->live) {  /* (outer takes a dict; g.call None too) */
        if ((kw = PyDict_New()) == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nk; i++) {
            if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0) {
                Py_DECREF(tuple);
                Py_DECREF(kw);
                return NULL;
            }
        }
    }
    PyObject *out;
    PyObject *name = NULL;
    if (g != NULL && g->live && g->timed != NULL && n > 0) {
        name = PyDict_GetItemWithError(g->names, (PyObject *)Py_TYPE(args[0]));  /* borrowed */
        if (name == NULL && PyErr_Occurred()) {
            Py_DECREF(tuple);
            Py_XDECREF(kw);
            return NULL;
        }
    }
    if (name != NULL) {
        Py_INCREF(name);
        out = gaps_call(g, name, S_call, h->orig, tuple, kw, Py_None, Py_None);
        Py_DECREF(name);
    }
    else {
        if (kw == NULL && (kw = PyDict_New()) == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyObject *call[3] = {h->orig, tuple, kw};
        out = PyObject_Vectorcall(h->outer, call, 3, NULL);
    }
    Py_DECREF(tuple);
    Py_XDECREF(kw);
    return out;
}

static PyObject *
nested_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *orig, *outer, *g = NULL;
    if (!PyArg_ParseTuple(args, "OO|O!:NestedCall", &orig, &outer, &GapRegionsType, &g))
        return NULL;
    if (!PyCallable_Check(orig) || !PyCallable_Check(outer)) {
        PyErr_SetString(PyExc_TypeError, "NestedCall(orig, outer) takes two callables");
        return NULL;
    }
    NestedCall *h = (NestedCall *)type->tp_alloc(type, 0);
    if (h == NULL)
        return NULL;
    Py_INCREF(orig);
    Py_INCREF(outer);
    Py_XINCREF(g);
    h->orig = orig;
    h->outer = outer;
    h->g = (GapRegions *)g;
    h->depth = 0;
    h->vectorcall = nested_vectorcall;
    return (PyObject *)h;
}

static PyObject *
nested_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static PyObject *
nested_get_depth(NestedCall *h, void *unused)
{
    return PyLong_FromLong(h->g != NULL ? h->g->depth : h->depth);
}

static int
nested_set_depth(NestedCall *h, PyObject *v, void *unused)
{
    long d = v == NULL ? -1 : PyLong_AsLong(v);
    if (d == -1 && (v == NULL || PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "depth is an int");
        return -1;
    }
    if (h->g != NULL) {  /* (GapRegions alone opens and closes its regions) */
        PyErr_SetString(PyExc_AttributeError, "depth is its GapRegions': read-only");
        return -1;
    }
    h->depth = (int)d;
    return 0;
}

static int
nested_traverse(NestedCall *h, visitproc visit, void *arg)
{
    Py_VISIT(h->orig);
    Py_VISIT(h->outer);
    Py_VISIT(h->g);
    return 0;
}

static int
nested_clear(NestedCall *h)
{
    Py_CLEAR(h->orig);
    Py_CLEAR(h->outer);
    Py_CLEAR(h->g);
    return 0;
}

static void
nested_dealloc(NestedCall *h)
{
    PyObject_GC_UnTrack(h);
    nested_clear(h);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static PyMemberDef nested_members[] = {
    {"orig", T_OBJECT, offsetof(NestedCall, orig), READONLY, "the __call__ it stands in for"},
    {"outer", T_OBJECT, offsetof(NestedCall, outer), READONLY, "called when depth is 0"},
    {NULL},
};

static PyGetSetDef nested_getset[] = {
    {"depth", (getter)nested_get_depth, (setter)nested_set_depth,
     "regions open (g's, read-only, if given): 0 makes calls regions, more sends them to "
     "orig", NULL},
    {NULL},
};

static PyTypeObject NestedCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gpuwatch.regions._native.NestedCall",
    .tp_basicsize = sizeof(NestedCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "NestedCall(orig, outer[, g]): obj(*a, **k) is a region (outer(orig, (obj, *a), "
              "k), or in C through GapRegions g) while depth is 0, else orig(obj, *a, **k) (see "
              "gpuwatch/regions/_autoregions.c)",
    .tp_new = nested_new,
    .tp_dealloc = (destructor)nested_dealloc,
    .tp_traverse = (traverseproc)nested_traverse,
    .tp_clear = (inquiry)nested_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(NestedCall, vectorcall),
    .tp_descr_get = nested_get,
    .tp_members = nested_members,
    .tp_getset = nested_getset,
};

int
autoregions_ready(void)
{
    if (S_call == NULL) {
        S_call = PyUnicode_InternFromString("call");
        S_range = PyUnicode_InternFromString("range");
        if (S_call == NULL || S_range == NULL)
            return -1;
    }
    if (PyType_Ready(&GapRegionsType) < 0 || PyType_Ready(&RangeHookType) < 0 ||
        PyType_Ready(&NestedCallType) < 0)
        return -1;
    return 0;
}

int
autoregions_add(PyObject *m)
{
    PyTypeObject *types[3] = {&GapRegionsType, &RangeHookType, &NestedCallType};
    const char *names[3] = {"GapRegions", "RangeHook", "NestedCall"};
    for (int i = 0; i < 3; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            return -1;
        }
    }
    return 0;
}
