/* What _native.c (the timed path) and _autoregions.c (gpuwatch run's hooks)
 * share: one extension module, gpuwatch.regions._native, built from both. */
#ifndef GPUWATCH_NATIVE_H
#define GPUWATCH_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* time.perf_counter_ns's clock on Linux */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* _native.c: FastRegion (see there) */
extern PyTypeObject FastRegionType;
/* FastRegion.begin(kind, name, labels, handle, source) in C: 1 opened, 0 take the slow path,
 * -1 error (set) */
int fast_begin_impl(PyObject *f, PyObject *kind, PyObject *name, PyObject *labels,
                    PyObject *handle, PyObject *source);
/* FastRegion.end(error): a new reference (None, or failed()'s result) or NULL */
PyObject *fast_end(PyObject *f, PyObject *error);

/* _autoregions.c: its types readied, and added to the module */
int autoregions_ready(void);
int autoregions_add(PyObject *module);

#endif
