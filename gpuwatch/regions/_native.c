/* Calls into the CUDA driver for the timed path, with the least host work and the GIL held.
 *
 * The timed region records two events per inference and reads them back later. Through ctypes
 * each call costs ~2 us of host time on an H100 VM, and runs a large generic code path (libffi,
 * argument converters) whose cache footprint slowed the user's own launches measurably
 * (benchmarks/probes/overhead_anatomy.py). Here a call is a direct call through a function pointer.
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
 *   FastRegion(...)        a whole timed region in one call (see below)
 *   stamp(launch, f, grid, stream, out, ctl)   the in-band clock probe's launch (see below)
 * and, in _autoregions.c, `gpuwatch run`'s hooks: NestedCall (torch.nn.Module.__call__),
 * GapRegions (the found regions' gap labels and nesting) and RangeHook (NVTX push/pop).
 * Pointers are Python ints (0 is a null pointer: the legacy default stream).
 */
#include "_native.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

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

static PyObject *
now(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(now_ns());
}

/* The stand-in device's cuEventRecord (bindings/standin.py), in C so that the C timed path
 * runs no Python on it (a Ctrl-C inside a ctypes callback is swallowed and its status is
 * garbage). `event` is the address of the event's slot, {int64 recorded_ns, int64 status}:
 * with status 0 the host clock is stamped in, else the status is returned. */
static int
standin_record(void *event, void *stream)
{
    int64_t *slot = (int64_t *)event;
    if (slot == NULL)
        return 400;  /* CUDA_ERROR_INVALID_HANDLE */
    if (slot[1] != 0)
        return (int)slot[1];
    slot[0] = (int64_t)now_ns();
    return 0;
}

static PyObject *
standin_record_addr(PyObject *module, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)standin_record);
}

/* FastRegion: a whole timed region in one C call, for the common case (gpuwatch/regions/timer.py).
 *
 *   f = FastRegion(record, slow, failed, free, out, watch)
 *   f(kind, name, labels, fn, args, kwargs, handle, source) -> fn(*args, **kwargs)
 *
 * When nothing is due (the fields below, kept by RegionTimer), a call is: the host clock, the
 * stream the work goes on, cuEventRecord(start), fn(*args, **kwargs), cuEventRecord(end), the
 * host clock, and one tuple appended to `out`:
 *     (kind, name, handle, source, labels, region id, (ev0, ev1), anchor, h0_ns, h1_ns)
 * (RegionTimer turns it into a row once the end event has completed). No Python frame of
 * gpuwatch's runs: after an idle gap the host runs every line several times slower, and the
 * program pays for each (benchmarks/results/h100_issue13/gap20_2026-11-26).
 *
 * Otherwise (housekeeping due: `due_ns` reached, region id `next_check` reached, `batch`
 * regions outstanding, no free event pair, a region open (`depth`), `hold` set, or a stream it
 * cannot tell by itself) the call goes to slow(...) with the same arguments, before anything
 * is recorded. If the start event fails, fn is not called; if fn raises or the end event fails,
 * the end event is still recorded first; either way failed(kind, name, labels, rid, pair,
 * handle, source, anchor, h0_ns, h1_ns, rc0, rc1, error) keeps the row and raises (or returns,
 * and the call's own exception propagates).
 *
 * The stream, when `handle` is None: `fixed_handle`/`fixed_source` if set (a session stream);
 * else torch's current stream, read through c10 directly (use_c10, validated by the caller
 * against torch's own getter) or through `getter(device)`; else, while none of the modules
 * named in `watch` is imported (torch counts as not, while `torch_cuda` says CUDA has not
 * started in it), the legacy default stream (handle 0, "default"); else slow. */
typedef struct {
    int8_t type;  /* c10::Device: DeviceType (int8) and DeviceIndex (int8) */
    int8_t index;
    int64_t id;   /* c10::StreamId */
} c10_stream;     /* c10::cuda::CUDAStream by value: trivially copyable, 16 bytes (rax:rdx) */
typedef c10_stream (*fn_c10_current)(int8_t);  /* c10::cuda::getCurrentCUDAStream(DeviceIndex) */
typedef void *(*fn_c10_handle)(const c10_stream *);  /* c10::cuda::CUDAStream::stream() const */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    fn_pp record;
    fn_c10_current c10_current;
    fn_c10_handle c10_handle;
    int8_t c10_device;
    PyObject *slow, *failed, *free, *out, *watch;
    PyObject *anchor, *fixed_handle, *fixed_source, *getter, *device, *torch_cuda;
    long long due_ns, last_poll_ns, poll_ns, seq, next_check, fast_regions;
    int outstanding, batch, depth, hold;
    /* the region open between begin() and end() (NVTX push/pop): (kind, name, labels,
     * handle, source, pair, anchor), its id, start time, stream and end event */
    PyObject *open;
    long long open_rid, open_h0;
    void *open_stream, *open_ev1;
} FastRegion;

static PyObject *S_torch, *S_default, *ZERO;

/* Housekeeping (resolving finished regions, re-anchoring the time base) is due at least this
 * often while regions run: gpuwatch.regions.timer.POLL_NS, the module's POLL_NS. */
#define POLL_NS 1000000000LL
/* FastRegion.c10_probe's child answers within this (it makes two calls), or is killed */
#define C10_PROBE_NS 2000000000LL

static int
fast_stream(FastRegion *f, PyObject *hobj, PyObject *sobj, void **stream, PyObject **handle,
            PyObject **source)
{
    /* -> 1 (new references in *handle, *source), 0: take the slow path, -1: error */
    if (hobj != Py_None) {
        *stream = PyLong_AsVoidPtr(hobj);
        if (*stream == NULL && PyErr_Occurred())
            return -1;
        Py_INCREF(hobj);
        Py_INCREF(sobj);
        *handle = hobj;
        *source = sobj;
        return 1;
    }
    if (f->fixed_handle != NULL && f->fixed_handle != Py_None) {
        *stream = PyLong_AsVoidPtr(f->fixed_handle);
        if (*stream == NULL && PyErr_Occurred())
            return -1;
        Py_INCREF(f->fixed_handle);
        Py_INCREF(f->fixed_source);
        *handle = f->fixed_handle;
        *source = f->fixed_source;
        return 1;
    }
    if (f->c10_current != NULL) {
        c10_stream s = f->c10_current(f->c10_device);
        *stream = f->c10_handle(&s);
        if ((*handle = PyLong_FromVoidPtr(*stream)) == NULL)
            return -1;
        Py_INCREF(S_torch);
        *source = S_torch;
        return 1;
    }
    if (f->getter != NULL && f->getter != Py_None) {
        PyObject *dev[1] = {f->device};
        PyObject *h = PyObject_Vectorcall(f->getter, dev, 1, NULL);
        if (h == NULL)
            return -1;
        *stream = PyLong_AsVoidPtr(h);
        if (*stream == NULL && PyErr_Occurred()) {
            Py_DECREF(h);
            return -1;
        }
        *handle = h;
        Py_INCREF(S_torch);
        *source = S_torch;
        return 1;
    }
    PyObject *modules = PyImport_GetModuleDict();  /* borrowed */
    Py_ssize_t n = PyTuple_GET_SIZE(f->watch);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(f->watch, i);
        PyObject *m = PyDict_GetItemWithError(modules, name);
        if (m == NULL) {
            if (PyErr_Occurred())
                return -1;
            continue;
        }
        /* torch imported, CUDA not started in it (torch.cuda's module global `_initialized`
         * False): nothing of torch's runs on a stream yet, the default stream stands */
        if (f->torch_cuda != NULL && PyDict_Check(f->torch_cuda) &&
            PyUnicode_CompareWithASCIIString(name, "torch") == 0) {
            PyObject *init = PyDict_GetItemString(f->torch_cuda, "_initialized");
            if (init == Py_False)
                continue;
        }
        return 0;  /* a framework with its own current stream: Python asks it */
    }
    *stream = NULL;
    Py_INCREF(ZERO);
    Py_INCREF(S_default);
    *handle = ZERO;
    *source = S_default;
    return 1;
}

/* The row tuple of a region the C path timed (see the type's comment), or NULL. Steals
 * handle, source, pair and anchor; borrows the rest. */
static PyObject *
fast_record(PyObject *kind, PyObject *name, PyObject *labels, PyObject *handle,
            PyObject *source, PyObject *pair, PyObject *anchor, long long rid, long long h0,
            long long h1)
{
    PyObject *rec = PyTuple_New(10);
    PyObject *v0 = PyLong_FromLongLong(rid), *v1 = PyLong_FromLongLong(h0),
             *v2 = PyLong_FromLongLong(h1);
    if (rec == NULL || v0 == NULL || v1 == NULL || v2 == NULL) {
        Py_XDECREF(rec);
        Py_XDECREF(v0);
        Py_XDECREF(v1);
        Py_XDECREF(v2);
        Py_DECREF(handle);
        Py_DECREF(source);
        Py_DECREF(pair);
        Py_DECREF(anchor);
        return NULL;
    }
    PyObject *items[10] = {kind, name, handle, source, labels, v0, pair, anchor, v1, v2};
    for (int i = 0; i < 10; i++) {
        if (i < 2 || i == 4)
            Py_INCREF(items[i]);  /* the rest are references handed over */
        PyTuple_SET_ITEM(rec, i, items[i]);
    }
    return rec;
}

/* Append a region's row tuple to `out` (steals rec); the first outstanding one makes
 * housekeeping due within poll_ns. */
static int
fast_append(FastRegion *f, PyObject *rec)
{
    if (f->outstanding + PyList_GET_SIZE(f->out) == 0 && f->last_poll_ns + f->poll_ns < f->due_ns)
        f->due_ns = f->last_poll_ns + f->poll_ns;
    int rc = PyList_Append(f->out, rec);
    Py_DECREF(rec);
    return rc;
}

/* failed(kind, name, labels, rid, pair, handle, source, anchor, h0, h1, rc0, rc1, error):
 * returns its result (a new reference) or NULL. Borrows everything. */
static PyObject *
fast_failed(FastRegion *f, PyObject *kind, PyObject *name, PyObject *labels, long long rid,
            PyObject *pair, PyObject *handle, PyObject *source, PyObject *anchor, long long h0,
            long long h1, int rc0, int rc1, PyObject *err)
{
    PyObject *owned[5] = {PyLong_FromLongLong(rid), PyLong_FromLongLong(h0),
                          PyLong_FromLongLong(h1), PyLong_FromLong(rc0), PyLong_FromLong(rc1)};
    PyObject *res = NULL;
    if (owned[0] && owned[1] && owned[2] && owned[3] && owned[4]) {
        PyObject *fa[13] = {kind, name, labels, owned[0], pair, handle, source, anchor,
                            owned[1], owned[2], owned[3], owned[4], err};
        res = PyObject_Vectorcall(f->failed, fa, 13, NULL);
    }
    for (int i = 0; i < 5; i++)
        Py_XDECREF(owned[i]);
    return res;
}

/* The free event pair at the end of the free list, taken off it: 1 (ev0, ev1 set, *pair a
 * new reference), 0 (none left: take the slow path) or -1 (error). The list's size is read
 * here, not before: the stream lookup may have run Python (the getter), and another thread
 * may have taken pairs meanwhile. */
static int
fast_pair(FastRegion *f, PyObject **pair, void **ev0, void **ev1)
{
    if (f->free == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FastRegion: cleared");
        return -1;
    }
    Py_ssize_t nfree = PyList_GET_SIZE(f->free);
    if (nfree == 0)
        return 0;
    PyObject *p = PyList_GET_ITEM(f->free, nfree - 1);
    Py_INCREF(p);
    if (PyList_SetSlice(f->free, nfree - 1, nfree, NULL) < 0)
        goto error;
    if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != 2) {
        PyErr_SetString(PyExc_TypeError, "FastRegion: the free list holds (ev0, ev1) tuples");
        goto error;
    }
    *ev0 = PyLong_AsVoidPtr(PyTuple_GET_ITEM(p, 0));
    if (*ev0 == NULL && PyErr_Occurred())
        goto error;
    *ev1 = PyLong_AsVoidPtr(PyTuple_GET_ITEM(p, 1));
    if (*ev1 == NULL && PyErr_Occurred())
        goto error;
    *pair = p;
    return 1;
error:
    Py_DECREF(p);
    return -1;
}

/* Nothing due: may a region start on the C path now? */
static int
fast_ready(FastRegion *f, Py_ssize_t nfree)
{
    return !(f->open != NULL || f->hold || f->depth || f->record == NULL ||
             f->seq >= f->next_check || nfree == 0 ||
             f->outstanding + PyList_GET_SIZE(f->out) >= f->batch || now_ns() >= f->due_ns);
}

static PyObject *
fast_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastRegion *f = (FastRegion *)self;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n != 8 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "FastRegion takes (kind, name, labels, fn, args, "
                        "kwargs, handle, source)");
        return NULL;
    }
    PyObject *fargs = args[4], *kwargs = args[5];
    if (!PyTuple_Check(fargs) || (kwargs != Py_None && !PyDict_Check(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "FastRegion: args must be a tuple, kwargs a dict or None");
        return NULL;
    }
    if (f->free == NULL || f->out == NULL || f->slow == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FastRegion: cleared");
        return NULL;
    }
    Py_ssize_t nfree = PyList_GET_SIZE(f->free);
    if (!fast_ready(f, nfree))
        return PyObject_Vectorcall(f->slow, args, 8, NULL);
    void *stream, *ev0, *ev1;
    PyObject *handle, *source, *pair;
    int got = fast_stream(f, args[6], args[7], &stream, &handle, &source);
    if (got < 0)
        return NULL;
    if (got == 0)
        return PyObject_Vectorcall(f->slow, args, 8, NULL);
    int paired = fast_pair(f, &pair, &ev0, &ev1);
    if (paired <= 0) {
        Py_DECREF(handle);
        Py_DECREF(source);
        return paired < 0 ? NULL : PyObject_Vectorcall(f->slow, args, 8, NULL);
    }
    PyObject *anchor = f->anchor != NULL ? f->anchor : Py_None;
    Py_INCREF(anchor);  /* the region's anchor, even if the field changes during fn */
    long long rid = f->seq;
    f->seq = rid + 1;
    f->fast_regions++;
    long long h0 = now_ns();
    int rc0 = f->record(ev0, stream);
    PyObject *out = NULL, *et = NULL, *ev = NULL, *tb = NULL;
    long long h1 = 0;
    int rc1 = 0;
    if (rc0 == 0) {
        f->depth++;  /* (counted, not set: another thread may open regions meanwhile) */
        out = PyObject_Call(args[3], fargs, kwargs == Py_None ? NULL : kwargs);
        f->depth--;
        /* the exception of fn (if any) is kept aside while the end event is recorded */
        PyErr_Fetch(&et, &ev, &tb);
        rc1 = f->record(ev1, stream);
        h1 = now_ns();
    }
    if (out == NULL || rc1 != 0) {
        PyObject *err = Py_None;
        if (et != NULL) {
            PyErr_NormalizeException(&et, &ev, &tb);
            if (tb != NULL && ev != NULL)
                PyException_SetTraceback(ev, tb);
            if (ev != NULL)
                err = ev;
        }
        PyObject *res = fast_failed(f, args[0], args[1], args[2], rid, pair, handle, source,
                                    anchor, h0, h1, rc0, rc1, err);
        Py_XDECREF(out);
        Py_DECREF(anchor);
        Py_DECREF(pair);
        Py_DECREF(handle);
        Py_DECREF(source);
        if (res == NULL) {  /* failed() raised: that is the error (it chains the call's own) */
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
            return NULL;
        }
        Py_DECREF(res);
        if (et != NULL) {
            PyErr_Restore(et, ev, tb);
            return NULL;
        }
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        PyErr_Format(PyExc_RuntimeError, "cuEventRecord failed with status %d", rc0 ? rc0 : rc1);
        return NULL;
    }
    PyObject *rec = fast_record(args[0], args[1], args[2], handle, source, pair, anchor, rid, h0,
                                h1);
    if (rec == NULL || fast_append(f, rec) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* begin(kind, name, labels, handle, source) -> bool: the first half of a region whose end is
 * a separate call (NVTX push/pop): when nothing is due (as for a call), the start event on
 * the stream, the region kept open until end(). False: nothing was done, take the slow path. */
int
fast_begin_impl(PyObject *self, PyObject *kind, PyObject *name, PyObject *labels,
                PyObject *hobj, PyObject *sobj)
{
    /* -> 1: opened, 0: nothing was done (take the slow path), -1: error (a failed start
     * event: its row kept by failed()) */
    FastRegion *f = (FastRegion *)self;
    if (f->free == NULL || f->out == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FastRegion: cleared");
        return -1;
    }
    Py_ssize_t nfree = PyList_GET_SIZE(f->free);
    if (!fast_ready(f, nfree))
        return 0;
    void *stream, *ev0, *ev1;
    PyObject *handle, *source, *pair;
    int got = fast_stream(f, hobj, sobj, &stream, &handle, &source);
    if (got <= 0)
        return got;
    int paired = fast_pair(f, &pair, &ev0, &ev1);
    if (paired <= 0) {
        Py_DECREF(handle);
        Py_DECREF(source);
        return paired;
    }
    PyObject *anchor = f->anchor != NULL ? f->anchor : Py_None;
    PyObject *open = PyTuple_Pack(7, kind, name, labels, handle, source, pair, anchor);
    Py_DECREF(handle);
    Py_DECREF(source);
    Py_DECREF(pair);
    if (open == NULL)
        return -1;
    long long rid = f->seq;
    f->seq = rid + 1;
    f->fast_regions++;
    long long h0 = now_ns();
    int rc0 = f->record(ev0, stream);  /* last: only the program's work after it */
    if (rc0 != 0) {
        PyObject *res = fast_failed(f, kind, name, labels, rid, PyTuple_GET_ITEM(open, 5),
                                    PyTuple_GET_ITEM(open, 3), PyTuple_GET_ITEM(open, 4),
                                    PyTuple_GET_ITEM(open, 6), h0, 0, rc0, 0, Py_None);
        Py_DECREF(open);
        if (res != NULL) {
            Py_DECREF(res);
            PyErr_Format(PyExc_RuntimeError, "cuEventRecord failed with status %d", rc0);
        }
        return -1;
    }
    f->open = open;
    f->open_rid = rid;
    f->open_h0 = h0;
    f->open_stream = stream;
    f->open_ev1 = ev1;
    f->depth++;
    return 1;
}

static PyObject *
fast_begin(FastRegion *f, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "begin(kind, name, labels, handle, source)");
        return NULL;
    }
    int rc = fast_begin_impl((PyObject *)f, args[0], args[1], args[2], args[3], args[4]);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
}

/* end(error) -> None: the end event of the region begin() opened (first: only the program's
 * work before it), then its row tuple to `out`; `error` (or a failing end event) goes through
 * failed(), which raises only for the event's failure with no error of the program's. */
PyObject *
fast_end(PyObject *self, PyObject *error)
{
    FastRegion *f = (FastRegion *)self;
    if (f->open == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FastRegion.end() without begin()");
        return NULL;
    }
    int rc1 = f->record(f->open_ev1, f->open_stream);
    long long h1 = now_ns();
    PyObject *o = f->open;
    f->open = NULL;
    f->depth--;
    PyObject *kind = PyTuple_GET_ITEM(o, 0), *name = PyTuple_GET_ITEM(o, 1),
             *labels = PyTuple_GET_ITEM(o, 2), *handle = PyTuple_GET_ITEM(o, 3),
             *source = PyTuple_GET_ITEM(o, 4), *pair = PyTuple_GET_ITEM(o, 5),
             *anchor = PyTuple_GET_ITEM(o, 6);
    if (rc1 != 0 || error != Py_None) {
        PyObject *res = fast_failed(f, kind, name, labels, f->open_rid, pair, handle, source,
                                    anchor, f->open_h0, h1, 0, rc1, error);
        Py_DECREF(o);
        return res;
    }
    Py_INCREF(handle);
    Py_INCREF(source);
    Py_INCREF(pair);
    Py_INCREF(anchor);
    PyObject *rec = fast_record(kind, name, labels, handle, source, pair, anchor, f->open_rid,
                                f->open_h0, h1);
    Py_DECREF(o);
    if (rec == NULL || fast_append(f, rec) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
fast_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *record, *slow, *failed, *free, *out, *watch;
    if (!PyArg_ParseTuple(args, "OOOO!O!O!:FastRegion", &record, &slow, &failed, &PyList_Type,
                          &free, &PyList_Type, &out, &PyTuple_Type, &watch))
        return NULL;
    void *rec = record == Py_None ? NULL : PyLong_AsVoidPtr(record);
    if (rec == NULL && PyErr_Occurred())
        return NULL;
    if (!PyCallable_Check(slow) || !PyCallable_Check(failed)) {
        PyErr_SetString(PyExc_TypeError, "FastRegion: slow and failed must be callable");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(watch); i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(watch, i))) {
            PyErr_SetString(PyExc_TypeError, "FastRegion: watch is a tuple of module names");
            return NULL;
        }
    }
    FastRegion *f = (FastRegion *)type->tp_alloc(type, 0);
    if (f == NULL)
        return NULL;
    f->vectorcall = fast_vectorcall;
    f->record = (fn_pp)rec;
    Py_INCREF(slow);
    Py_INCREF(failed);
    Py_INCREF(free);
    Py_INCREF(out);
    Py_INCREF(watch);
    f->slow = slow;
    f->failed = failed;
    f->free = free;
    f->out = out;
    f->watch = watch;
    f->batch = 16;
    f->poll_ns = POLL_NS;  /* (regions.timer sets its own, POLL_NS too: a test keeps them one) */
    return (PyObject *)f;
}

static PyObject *
fast_use_c10(FastRegion *f, PyObject *const *args, Py_ssize_t nargs)
{
    /* use_c10(current, handle, device) or use_c10(0, 0, 0) to stop: see the type's comment */
    void *p[2];
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "use_c10(current_addr, handle_addr, device)");
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        p[i] = PyLong_AsVoidPtr(args[i]);
        if (p[i] == NULL && PyErr_Occurred())
            return NULL;
    }
    long dev = PyLong_AsLong(args[2]);
    if (dev == -1 && PyErr_Occurred())
        return NULL;
    if (dev < -1 || dev > 127 || (p[0] == NULL) != (p[1] == NULL)) {
        PyErr_SetString(PyExc_ValueError, "use_c10: two addresses (or none) and a device 0-127");
        return NULL;
    }
    f->c10_current = (fn_c10_current)p[0];
    f->c10_handle = (fn_c10_handle)p[1];
    f->c10_device = (int8_t)dev;
    Py_RETURN_NONE;
}

static PyObject *
fast_c10_stream(FastRegion *f, PyObject *unused)
{
    /* The current stream's handle as the c10 path reads it (None when not in use): for the
     * caller's check against torch's own getter. */
    if (f->c10_current == NULL)
        Py_RETURN_NONE;
    c10_stream s = f->c10_current(f->c10_device);
    return PyLong_FromVoidPtr(f->c10_handle(&s));
}

static PyObject *
fast_c10_probe(FastRegion *f, PyObject *expected)
{
    /* c10_probe(handle) -> bool: does the c10 path, called in a forked child, give `handle`
     * (torch's own answer)? The functions are found by name, but their calling convention is
     * assumed (a 16-byte CUDAStream returned in registers): were it another torch's, the call
     * could crash. The child makes the first call, and runs nothing else (no Python, no
     * allocation: fork copies only this thread), so a wrong guess ends the child, never the
     * program. False also where fork fails. */
    if (f->c10_current == NULL)
        Py_RETURN_FALSE;
    void *want = PyLong_AsVoidPtr(expected);
    if (want == NULL && PyErr_Occurred())
        return NULL;
    pid_t pid = fork();
    if (pid == 0) {
        /* (a crash here is the answer: no faulthandler dump, no core file) */
        int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
            signal(fatal[i], SIG_DFL);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        c10_stream s = f->c10_current(f->c10_device);
        _exit(f->c10_handle(&s) == want ? 0 : 1);
    }
    if (pid < 0)
        Py_RETURN_FALSE;
    /* (a child that does not answer within C10_PROBE_NS, stuck on a lock another thread held
     * at the fork, is killed: the answer is no) */
    int status = 0;
    pid_t got = 0;
    long long deadline = now_ns() + C10_PROBE_NS;
    Py_BEGIN_ALLOW_THREADS
    struct timespec ms = {0, 1000000};
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 || (got < 0 && errno == EINTR)) {
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            got = -1;
            break;
        }
        nanosleep(&ms, NULL);
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int
fast_traverse(FastRegion *f, visitproc visit, void *arg)
{
    Py_VISIT(f->slow);
    Py_VISIT(f->failed);
    Py_VISIT(f->free);
    Py_VISIT(f->out);
    Py_VISIT(f->watch);
    Py_VISIT(f->anchor);
    Py_VISIT(f->fixed_handle);
    Py_VISIT(f->fixed_source);
    Py_VISIT(f->getter);
    Py_VISIT(f->device);
    Py_VISIT(f->torch_cuda);
    Py_VISIT(f->open);
    return 0;
}

static int
fast_clear(FastRegion *f)
{
    Py_CLEAR(f->slow);
    Py_CLEAR(f->failed);
    Py_CLEAR(f->free);
    Py_CLEAR(f->out);
    Py_CLEAR(f->watch);
    Py_CLEAR(f->anchor);
    Py_CLEAR(f->fixed_handle);
    Py_CLEAR(f->fixed_source);
    Py_CLEAR(f->getter);
    Py_CLEAR(f->device);
    Py_CLEAR(f->torch_cuda);
    Py_CLEAR(f->open);
    f->record = NULL;  /* cleared: every call goes... nowhere; calls fail cleanly */
    return 0;
}

static void
fast_dealloc(FastRegion *f)
{
    PyObject_GC_UnTrack(f);
    fast_clear(f);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyMemberDef fast_members[] = {
    {"due_ns", T_LONGLONG, offsetof(FastRegion, due_ns), 0,
     "host clock (CLOCK_MONOTONIC ns) from which every call takes the slow path"},
    {"last_poll_ns", T_LONGLONG, offsetof(FastRegion, last_poll_ns), 0, "last resolution"},
    {"poll_ns", T_LONGLONG, offsetof(FastRegion, poll_ns), 0,
     "the first outstanding region is resolved this long after the last resolution"},
    {"seq", T_LONGLONG, offsetof(FastRegion, seq), 0, "the next region id"},
    {"next_check", T_LONGLONG, offsetof(FastRegion, next_check), 0,
     "region id from which calls take the slow path (a checked region)"},
    {"outstanding", T_INT, offsetof(FastRegion, outstanding), 0,
     "regions outstanding beyond `out`"},
    {"batch", T_INT, offsetof(FastRegion, batch), 0,
     "the slow path once this many regions are outstanding (with `out`)"},
    {"depth", T_INT, offsetof(FastRegion, depth), 0, "regions open"},
    {"hold", T_INT, offsetof(FastRegion, hold), 0, "nonzero: every call takes the slow path"},
    {"is_open", T_OBJECT, offsetof(FastRegion, open), READONLY,
     "the region begin() opened, as (kind, name, labels, handle, source, pair, anchor)"},
    {"fast_regions", T_LONGLONG, offsetof(FastRegion, fast_regions), READONLY,
     "regions the C path began (start event tried)"},
    {"anchor", T_OBJECT, offsetof(FastRegion, anchor), 0, "the time base's current anchor"},
    {"fixed_handle", T_OBJECT, offsetof(FastRegion, fixed_handle), 0,
     "the stream to time on when none is given (None: find it)"},
    {"fixed_source", T_OBJECT, offsetof(FastRegion, fixed_source), 0, "its source"},
    {"getter", T_OBJECT, offsetof(FastRegion, getter), 0,
     "getter(device) -> torch's current stream handle (None: not in use)"},
    {"device", T_OBJECT, offsetof(FastRegion, device), 0, "the getter's argument"},
    {"torch_cuda", T_OBJECT, offsetof(FastRegion, torch_cuda), 0,
     "torch.cuda's module dict: while its `_initialized` is False, torch imported is no reason "
     "for the slow path"},
    {"free", T_OBJECT, offsetof(FastRegion, free), READONLY, "free (ev0, ev1) pairs"},
    {"out", T_OBJECT, offsetof(FastRegion, out), READONLY, "regions ended, not yet taken"},
    {NULL},
};

static PyMethodDef fast_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))fast_begin, METH_FASTCALL,
     "begin(kind, name, labels, handle, source) -> bool: open a region (False: take the slow "
     "path)"},
    {"end", (PyCFunction)fast_end, METH_O, "end(error): close the region begin() opened"},
    {"use_c10", (PyCFunction)(void (*)(void))fast_use_c10, METH_FASTCALL,
     "use_c10(current_addr, handle_addr, device): read torch's current stream through c10"},
    {"c10_stream", (PyCFunction)fast_c10_stream, METH_NOARGS,
     "the current stream as the c10 path reads it, or None (call c10_probe first)"},
    {"c10_probe", (PyCFunction)fast_c10_probe, METH_O,
     "c10_probe(handle) -> bool: the c10 path, tried in a forked child, gives handle"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject FastRegionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gpuwatch.regions._native.FastRegion",
    .tp_basicsize = sizeof(FastRegion),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "FastRegion(record, slow, failed, free, out, watch): a timed region in one C "
              "call (see gpuwatch/regions/_native.c)",
    .tp_new = fast_new,
    .tp_dealloc = (destructor)fast_dealloc,
    .tp_traverse = (traverseproc)fast_traverse,
    .tp_clear = (inquiry)fast_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FastRegion, vectorcall),
    .tp_members = fast_members,
    .tp_methods = fast_methods,
};

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

static PyMethodDef methods[] = {
    {"stamp", (PyCFunction)(void (*)(void))stamp, METH_FASTCALL,
     "stamp(launch, f, grid, stream, out, ctl) -> int: launch the clock probe (see "
     "gpuwatch/regions/_native.c)"},
    {"standin_record_addr", standin_record_addr, METH_NOARGS,
     "the address of the stand-in device's C cuEventRecord (see gpuwatch/regions/_native.c)"},
    {"now", now, METH_NOARGS, "now() -> int: CLOCK_MONOTONIC in ns (time.perf_counter_ns)"},
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
    if (PyType_Ready(&FastRegionType) < 0 || autoregions_ready() < 0)
        return NULL;
    if (S_torch == NULL) {
        S_torch = PyUnicode_InternFromString("torch");
        S_default = PyUnicode_InternFromString("default");
        ZERO = PyLong_FromLong(0);
        if (S_torch == NULL || S_default == NULL || ZERO == NULL)
            return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
#ifdef Py_GIL_DISABLED
    /* The timed path keeps its state in FastRegion objects and module globals that only the
     * GIL guards: a free-threaded Python must keep the GIL on for this module. */
    PyUnstable_Module_SetGIL(m, Py_MOD_GIL_USED);
#endif
    PyObject *poll = PyLong_FromLongLong(POLL_NS);
    if (poll == NULL || PyModule_AddObjectRef(m, "POLL_NS", poll) < 0) {
        Py_XDECREF(poll);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(poll);
    Py_INCREF(&FastRegionType);
    if (PyModule_AddObject(m, "FastRegion", (PyObject *)&FastRegionType) < 0) {
        Py_DECREF(&FastRegionType);
        Py_DECREF(m);
        return NULL;
    }
    if (autoregions_add(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
