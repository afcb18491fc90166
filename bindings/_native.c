/* Calls into the CUDA driver for the timed path, with the least host work and the GIL held.
 *
 * The timed region records two events per inference and reads them back later. Through ctypes
 * each call costs ~2 us of host time on an H100 VM, and runs a large generic code path (libffi,
 * argument converters) whose cache footprint slowed the user's own launches measurably
 * (benchmarks/overhead_anatomy.py). Here a call is a direct call through a function pointer.
 *
 * Nothing here links to CUDA: the caller passes the address of the driver function (looked up
 * with dlsym by ctypes), so the module builds and is testable anywhere. The GIL stays held: the
 * calls return in about a microsecond, and releasing it would let another Python thread (the
 * trace writer) take it for up to a switch interval in the middle of the user's launches.
 *
 *   status(fn, a)          int fn(void *a)                      (cuEventQuery)
 *   status2(fn, a, b)      int fn(void *a, void *b)             (cuEventRecord)
 *   elapsed(fn, a, b)      int fn(float *ms, void *a, void *b)  (cuEventElapsedTime)
 *                          -> the float on success, else the int status
 *   timed_call(...)        the inside of a timed region: event, call, event (see below)
 *   stamp(launch, f, grid, stream, out, ctl)   the in-band clock probe's launch (see below)
 *   NestedCall(orig, outer)  gpuwatch run's torch.nn.Module.__call__ (see below)
 * Pointers are Python ints (0 is a null pointer: the legacy default stream).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stddef.h>
#include <time.h>

typedef int (*fn_p)(void *);
typedef int (*fn_pp)(void *, void *);
typedef int (*fn_fpp)(float *, void *, void *);

static int
pointers(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, void **out, const char *name)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", name, want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        out[i] = PyLong_AsVoidPtr(args[i]);
        if (out[i] == NULL && PyErr_Occurred())
            return -1;
    }
    if (out[0] == NULL) {
        PyErr_Format(PyExc_ValueError, "%s: null function pointer", name);
        return -1;
    }
    return 0;
}

static PyObject *
status(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[2];
    if (pointers(args, nargs, 2, p, "status") < 0)
        return NULL;
    return PyLong_FromLong(((fn_p)p[0])(p[1]));
}

static PyObject *
status2(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[3];
    if (pointers(args, nargs, 3, p, "status2") < 0)
        return NULL;
    return PyLong_FromLong(((fn_pp)p[0])(p[1], p[2]));
}

static PyObject *
elapsed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[3];
    float ms = 0.0f;
    if (pointers(args, nargs, 3, p, "elapsed") < 0)
        return NULL;
    int rc = ((fn_fpp)p[0])(&ms, p[1], p[2]);
    if (rc != 0)
        return PyLong_FromLong(rc);
    return PyFloat_FromDouble((double)ms);
}

static inline long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* time.perf_counter_ns's clock on Linux */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static PyObject *
now(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(now_ns());
}

/* timed_call(record, ev0, ev1, stream, fn, args, kwargs, stamps) -> fn(*args, **kwargs)
 *
 * The timed region's inside: the host clock, cuEventRecord(ev0, stream), the call, then
 * cuEventRecord(ev1, stream) and the host clock, and nothing else. `stamps`, a list of 4, gets
 * [host ns before the start event, its status, host ns after the end event, its status]
 * (None where not reached). If the start event fails, fn is not called and RuntimeError is
 * raised (stamps[1] has the status); if fn raises, the end event is still recorded and the
 * exception propagates. */
static PyObject *
timed_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[4];
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "timed_call takes 8 arguments, got %zd", nargs);
        return NULL;
    }
    if (pointers(args, 4, 4, p, "timed_call") < 0)
        return NULL;
    PyObject *fn = args[4], *fargs = args[5], *kwargs = args[6], *stamps = args[7];
    if (!PyTuple_Check(fargs) || !PyList_Check(stamps) || PyList_GET_SIZE(stamps) != 4 ||
        (kwargs != Py_None && !PyDict_Check(kwargs))) {
        PyErr_SetString(PyExc_TypeError,
                        "timed_call(record, ev0, ev1, stream, fn, tuple, dict or None, list of 4)");
        return NULL;
    }
    fn_pp record = (fn_pp)p[0];
    long long h0 = now_ns();
    int rc0 = record(p[1], p[3]);
    PyObject *v;
    if ((v = PyLong_FromLongLong(h0)) == NULL)
        return NULL;
    PyList_SetItem(stamps, 0, v);  /* steals v */
    if ((v = PyLong_FromLong(rc0)) == NULL)
        return NULL;
    PyList_SetItem(stamps, 1, v);
    Py_INCREF(Py_None);
    PyList_SetItem(stamps, 2, Py_None);
    Py_INCREF(Py_None);
    PyList_SetItem(stamps, 3, Py_None);
    if (rc0 != 0) {
        PyErr_Format(PyExc_RuntimeError, "cuEventRecord failed with status %d", rc0);
        return NULL;
    }
    PyObject *out = PyObject_Call(fn, fargs, kwargs == Py_None ? NULL : kwargs);
    /* the exception of fn (if any) is kept aside while the end event and stamps are made */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    int rc1 = record(p[2], p[3]);
    long long h1 = now_ns();
    int ok = (v = PyLong_FromLongLong(h1)) != NULL && PyList_SetItem(stamps, 2, v) == 0 &&
             (v = PyLong_FromLong(rc1)) != NULL && PyList_SetItem(stamps, 3, v) == 0;
    if (!ok) {
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        Py_XDECREF(out);
        return NULL;
    }
    PyErr_Restore(et, ev, tb);
    return out;
}

/* stamp(launch, f, grid, stream, out, ctl) -> int
 *
 * Launch the clock-probe kernel `f` (bindings/probe.py) as `grid` one-thread blocks on `stream`
 * with its two pointer arguments (`out`: the slot in mapped host memory it writes, `ctl`: the
 * slot's device counters), through cuLaunchKernel at address `launch`. Returns the CUresult. */
typedef int (*fn_launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                         unsigned, void *, void **, void **);

static PyObject *
stamp(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    void *p[6];
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "stamp takes 6 arguments, got %zd", nargs);
        return NULL;
    }
    if (pointers(args, 2, 2, p, "stamp") < 0)
        return NULL;
    unsigned long grid = PyLong_AsUnsignedLong(args[2]);
    if (grid == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    for (int i = 3; i < 6; i++) {
        p[i] = PyLong_AsVoidPtr(args[i]);
        if (p[i] == NULL && PyErr_Occurred())
            return NULL;
    }
    void *params[2] = {&p[4], &p[5]};
    int rc = ((fn_launch)p[0])(p[1], (unsigned)grid, 1, 1, 1, 1, 1, 0, p[3], params, NULL);
    return PyLong_FromLong(rc);
}

/* NestedCall(orig, outer): a callable to put in a class's __call__ (gpuwatch run puts it in
 * torch.nn.Module's). While `depth` is 0, a call `obj(*args, **kwargs)` becomes
 * `outer(orig, (obj, *args), kwargs)` (Python: the call becomes a timed region, in one frame);
 * while a region is open (depth > 0) it goes straight to `orig`, torch's own
 * __call__, with no Python frame of gpuwatch's: a model's submodule calls, inside the region's
 * events, cost one vectorcall more each, not a Python function call. It binds as a method
 * (Py_TPFLAGS_METHOD_DESCRIPTOR: instance calls pass `self` first, unbound, as a function's). */
typedef struct {
    PyObject_HEAD
    PyObject *orig;
    PyObject *outer;
    int depth;
    vectorcallfunc vectorcall;
} NestedCall;

static PyObject *
nested_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    NestedCall *h = (NestedCall *)self;
    if (h->depth > 0)
        return PyObject_Vectorcall(h->orig, args, nargsf, kwnames);
    /* outer(orig, args, kwargs): the call as data, so that outer is the one Python frame */
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    PyObject *kw = PyDict_New();
    if (kw == NULL) {
        Py_DECREF(tuple);
        return NULL;
    }
    Py_ssize_t nk = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nk; i++) {
        if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0) {
            Py_DECREF(tuple);
            Py_DECREF(kw);
            return NULL;
        }
    }
    PyObject *call[3] = {h->orig, tuple, kw};
    PyObject *out = PyObject_Vectorcall(h->outer, call, 3, NULL);
    Py_DECREF(tuple);
    Py_DECREF(kw);
    return out;
}

static PyObject *
nested_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *orig, *outer;
    if (!PyArg_ParseTuple(args, "OO:NestedCall", &orig, &outer))
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
    h->orig = orig;
    h->outer = outer;
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

static int
nested_traverse(NestedCall *h, visitproc visit, void *arg)
{
    Py_VISIT(h->orig);
    Py_VISIT(h->outer);
    return 0;
}

static int
nested_clear(NestedCall *h)
{
    Py_CLEAR(h->orig);
    Py_CLEAR(h->outer);
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
    {"depth", T_INT, offsetof(NestedCall, depth), 0,
     "regions open: 0 sends calls to outer, more to orig"},
    {"orig", T_OBJECT, offsetof(NestedCall, orig), READONLY, "the __call__ it stands in for"},
    {"outer", T_OBJECT, offsetof(NestedCall, outer), READONLY, "called when depth is 0"},
    {NULL},
};

static PyTypeObject NestedCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gpuwatch.bindings._native.NestedCall",
    .tp_basicsize = sizeof(NestedCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "NestedCall(orig, outer): obj(*a, **k) is outer(orig, (obj, *a), k) while depth "
              "is 0, else orig(obj, *a, **k) (see bindings/_native.c)",
    .tp_new = nested_new,
    .tp_dealloc = (destructor)nested_dealloc,
    .tp_traverse = (traverseproc)nested_traverse,
    .tp_clear = (inquiry)nested_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(NestedCall, vectorcall),
    .tp_descr_get = nested_get,
    .tp_members = nested_members,
};

static PyMethodDef methods[] = {
    {"stamp", (PyCFunction)(void (*)(void))stamp, METH_FASTCALL,
     "stamp(launch, f, grid, stream, out, ctl) -> int: launch the clock probe (see "
     "bindings/_native.c)"},
    {"now", now, METH_NOARGS, "now() -> int: CLOCK_MONOTONIC in ns (time.perf_counter_ns)"},
    {"timed_call", (PyCFunction)(void (*)(void))timed_call, METH_FASTCALL,
     "timed_call(record, ev0, ev1, stream, fn, args, kwargs, stamps): the timed region's "
     "inside (see bindings/_native.c)"},
    {"status", (PyCFunction)(void (*)(void))status, METH_FASTCALL,
     "status(fn, a) -> int: call int fn(void *a)"},
    {"status2", (PyCFunction)(void (*)(void))status2, METH_FASTCALL,
     "status2(fn, a, b) -> int: call int fn(void *a, void *b)"},
    {"elapsed", (PyCFunction)(void (*)(void))elapsed, METH_FASTCALL,
     "elapsed(fn, a, b) -> float | int: call int fn(float *ms, void *a, void *b); the float "
     "on success, else the status"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "Direct calls into CUDA driver functions by address, for the timed path.", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&NestedCallType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&NestedCallType);
    if (PyModule_AddObject(m, "NestedCall", (PyObject *)&NestedCallType) < 0) {
        Py_DECREF(&NestedCallType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
