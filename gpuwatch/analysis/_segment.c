/* gpuwatch.analysis._segment: the exact penalised least-squares segmentation (PELT) that
 * layers.change_points asks for, in C.
 *
 * It is ruptures' search for KernelCPD(kernel="linear") (ruptures 1.1,
 * detection/_detection/ekcpd_pelt_computation.c, BSD-2-Clause, (c) Charles Truong et al.),
 * step for step and operation for operation, so that its path is the same to the bit: the
 * same sums in the same order, the same comparisons, the same pruning. What differs is the
 * kernel: ruptures evaluates it through kernel_value_by_name(), which compares the kernel's
 * name with strcmp() for each of the ~n^2/2 products; here it is the product of two doubles,
 * inline (1-D signals only, which is all layers.py searches). On a 2,000-point series that is
 * ~4x less time for the same answer. Where this module is not built, layers.py loads
 * ruptures' own search; tests/test_analysis_layers.py checks the two agree.
 *
 * Built with -ffp-contract=off (setup.py): a fused multiply-add would round differently from
 * ruptures' separate multiply and add, and move a tie between two paths.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>

/* The penalised cost of the best segmentation of y[0:t] whose last segment starts at s (its
 * cost without the penalty kept for pruning): ruptures' expression, on the same values. */
static inline double
candidate(const double *D, const double *S, const double *M_V, double *M_pruning, int s, int t,
          double beta)
{
    double c_cost_sum = M_V[s] + (D[t] - D[s] - S[s] / (t - s));
    M_pruning[s] = c_cost_sum;
    return c_cost_sum + beta;
}

/* ruptures' ekcpd_pelt_compute for the linear kernel and n_dims = 1. signal: n doubles; beta:
 * the penalty per change; path: n + 1 ints, path[t] = the start of the last segment of the
 * best segmentation of signal[0:t]. Returns 0, or -1 when memory ran out. */
static int
pelt_l2(const double *signal, int n_samples, double beta, int min_size, int *path)
{
    int t, s, s_min = 0;
    double c_cost, c_cost_sum, c_r, diag_element;
    double *D = (double *)calloc((size_t)n_samples + 1, sizeof(double));
    double *S = (double *)calloc((size_t)n_samples + 1, sizeof(double));
    double *M_V = (double *)calloc((size_t)n_samples + 1, sizeof(double));
    double *M_pruning = (double *)calloc((size_t)n_samples + 1, sizeof(double));
    if (D == NULL || S == NULL || M_V == NULL || M_pruning == NULL) {
        free(D); free(S); free(M_V); free(M_pruning);
        return -1;
    }
    for (t = 0; t < n_samples + 1; t++)
        path[t] = 0;

    /* for t < 2 * min_size there cannot be any change point */
    for (t = 1; t < 2 * min_size; t++) {
        const double y = signal[t - 1];
        diag_element = y * y;
        D[t] = D[t - 1] + diag_element;
        /* S[s] = S_{s, t}: S_{s, t-1} plus the new column, accumulated from the end */
        c_r = 0.0;
        for (s = t - 1; s >= 0; s--) {
            c_r += signal[s] * y;
            S[s] += 2 * c_r - diag_element;
        }
        c_cost = D[t] - D[0] - S[0] / t;
        M_V[t] = c_cost + beta;
    }

    for (t = 2 * min_size; t < n_samples + 1; t++) {
        const double y = signal[t - 1];
        const int s_hi = t - min_size; /* the last start the search takes */
        const int s_lo = s_min + 1 > min_size ? s_min + 1 : min_size; /* its first after s_min */
        double best;
        int best_s;
        diag_element = y * y;
        D[t] = D[t - 1] + diag_element;
        /* One pass from the end, as ruptures' update of S runs, that also searches each start
         * once its S[s] is complete (ruptures searches in a second pass from s_min up, keeping
         * the first strict minimum: here, from the top down, `<=` keeps the lowest start among
         * equal sums, the same one). Each sum is the same expression on the same values. */
        c_r = 0.0;
        best = INFINITY; /* (a NaN sum is never taken, as in ruptures' `>`) */
        best_s = -1;
        for (s = t - 1; s > s_hi && s > s_min; s--) { /* (too near t to start a segment) */
            c_r += signal[s] * y;
            S[s] += 2 * c_r - diag_element;
        }
        for (; s >= s_lo && s > s_min; s--) {
            c_r += signal[s] * y;
            S[s] += 2 * c_r - diag_element;
            c_cost_sum = candidate(D, S, M_V, M_pruning, s, t, beta);
            if (c_cost_sum <= best) {
                best = c_cost_sum;
                best_s = s;
            }
        }
        for (; s > s_min; s--) { /* (starts before min_size: none when s_min > 0) */
            c_r += signal[s] * y;
            S[s] += 2 * c_r - diag_element;
        }
        c_r += signal[s_min] * y;
        S[s_min] += 2 * c_r - diag_element;
        /* s_min itself: ruptures' first candidate, which a later one replaces only when
         * strictly lower */
        c_cost_sum = candidate(D, S, M_V, M_pruning, s_min, t, beta);
        if (!(c_cost_sum > best)) {
            best = c_cost_sum;
            best_s = s_min;
        }
        M_V[t] = best;
        path[t] = best_s;
        /* pruning: a start that cannot begin the last segment of any later optimum */
        while ((M_pruning[s_min] >= M_V[t]) && (s_min < t - min_size + 1)) {
            if (s_min == 0)
                s_min += min_size;
            else
                s_min++;
        }
    }
    free(D); free(S); free(M_V); free(M_pruning);
    return 0;
}

static PyObject *
segment_pelt_l2(PyObject *self, PyObject *args)
{
    Py_buffer view;
    double beta;
    int min_size;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*di:pelt_l2", &view, &beta, &min_size))
        return NULL;
    PyObject *out = NULL;
    int *path = NULL;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(double);
    if (view.len % (Py_ssize_t)sizeof(double) != 0 || n > (Py_ssize_t)(INT_MAX - 1)) {
        PyErr_SetString(PyExc_ValueError, "pelt_l2: signal must be float64 values, < 2**31");
        goto done;
    }
    if (min_size < 1) {
        PyErr_SetString(PyExc_ValueError, "pelt_l2: min_size must be at least 1");
        goto done;
    }
    if (n < 2 * (Py_ssize_t)min_size) {
        /* (ruptures' search writes past its arrays there: layers.change_points asks for none) */
        PyErr_SetString(PyExc_ValueError,
                        "pelt_l2: the signal must hold at least 2 x min_size values");
        goto done;
    }
    path = (int *)malloc(((size_t)n + 1) * sizeof(int));
    if (path == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pelt_l2((const double *)view.buf, (int)n, beta, min_size, path);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyList_New(n + 1);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i <= n; i++) {
        PyObject *v = PyLong_FromLong(path[i]);
        if (v == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, v);
    }
done:
    free(path);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"pelt_l2", segment_pelt_l2, METH_VARARGS,
     "pelt_l2(signal, pen, min_size, /) -> list[int]\n--\n\n"
     "ruptures' PELT path for KernelCPD(kernel='linear') on a 1-D float64 signal (bytes-like, "
     "C-contiguous): n + 1 ints, path[t] = the start of the last segment of y[0:t]'s best "
     "segmentation."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_segment",
    "The penalised least-squares change-point search of layers.change_points, in C.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__segment(void)
{
    return PyModule_Create(&module);
}
