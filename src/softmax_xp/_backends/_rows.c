/*
 * Layer 3, NumPy: the Python bindings of the fused C row kernels (module softmax_xp._backends._rows).
 *
 * The kernels are plain C in _rows_core.h (what they compute and how: see there), compiled once per
 * instruction-set level (_rows_base.c, and on x86-64 _rows_avx2.c and _rows_avx512.c). When the
 * module loads it picks the best level the CPU runs (environment variable SOFTMAX_XP_ISA may name
 * a lower one); isa() tells which.
 *
 * Every kernel function takes 2-D buffers (rows, C) whose rows are contiguous (any row stride),
 * checks their format, shape and writability, and releases the GIL while it works. Its last,
 * optional argument `threads` (default 1) is how many threads may share the rows: the call is
 * split over row pieces and run on the C thread pool (_rows_pool.c), the caller one of the
 * threads; it returns the number of threads that took part. The Python layer (_numpy.py) decides
 * how many threads a call is worth and keeps every other case (masks, strided rows).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "_rows_kernels.h"
#include "_rows_pool.h"

/* The tables the CPU runs, best first, and the one in use (set when the module loads). */
static const sxp_kernels *usable[3];
static int n_usable;
static const sxp_kernels *K;

/* ---------------------------------------------------------------------------------------------
 * Python bindings
 * ------------------------------------------------------------------------------------------- */

/* 0: float32, 1: float64, -1: anything else. */
static int kind_of(const Py_buffer *b) {
    const char *f = b->format;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (f[1] != '\0') return -1;
    if (f[0] == 'f' && b->itemsize == 4) return 0;
    if (f[0] == 'd' && b->itemsize == 8) return 1;
    return -1;
}

/* Acquire the n 2-D buffers objs[i] (the last one writable), each (rows, C) with contiguous
 * rows, all of the same shape and floating dtype. Returns the dtype kind, or -1 with an
 * exception set (and every buffer released). */
static int get_rows(PyObject **objs, Py_buffer *bufs, int n) {
    int got = 0, kind = -1;
    for (; got < n; got++) {
        int flags = PyBUF_STRIDES | PyBUF_FORMAT | (got == n - 1 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[got], &bufs[got], flags) < 0) goto fail;
    }
    kind = kind_of(&bufs[0]);
    for (int i = 0; i < n; i++) {
        Py_buffer *b = &bufs[i];
        if (b->ndim != 2 || kind_of(b) != kind || kind < 0 || b->shape[0] != bufs[0].shape[0] ||
            b->shape[1] != bufs[0].shape[1] ||
            (b->shape[1] > 1 && b->strides[1] != b->itemsize)) {
            PyErr_Format(PyExc_ValueError,
                         "operand %d: expected a 2-D float32/float64 buffer with contiguous rows "
                         "and the shape of operand 0",
                         i);
            goto fail;
        }
    }
    return kind;
fail:
    for (int i = 0; i < got; i++) PyBuffer_Release(&bufs[i]);
    return -1;
}

static void release(Py_buffer *bufs, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&bufs[i]);
}

/* ---------------------------------------------------------------------------------------------
 * One call of a kernel, split over rows: the operands' bases and per-row steps, and what the
 * kernel needs besides. run_range runs rows [r0, r1) of it; run_job hands the rows to the pool.
 * ------------------------------------------------------------------------------------------- */

enum { OP_FORWARD, OP_PAIR, OP_JACOBIAN, OP_LSE, OP_LSE_VJP, OP_CE, OP_CE_VJP, OP_EXP };

#define MAX_OPERANDS 6

typedef struct {
    const sxp_kernels *k; /* the level in use when the call began */
    int op, f64, flag;    /* flag: take_log (forward, jacobian) or the pair kind */
    char *p[MAX_OPERANDS];
    sxp_ssize ld[MAX_OPERANDS];   /* what the kernel is told: bytes between rows (or items) */
    sxp_ssize step[MAX_OPERANDS]; /* bytes to skip per row of the call */
    sxp_ssize c;
    double eps;
    long long ignore;
    int has_ignore;
    char *scratch; /* jacobian (log): c numbers per thread slot */
} job;

static void run_range(void *ctx, int slot, ptrdiff_t r0, ptrdiff_t r1) {
    const job *j = (const job *)ctx;
    const sxp_kernels *k = j->k;
    char *p[MAX_OPERANDS];
    for (int i = 0; i < MAX_OPERANDS; i++) p[i] = j->p[i] ? j->p[i] + r0 * j->step[i] : NULL;
    const sxp_ssize *ld = j->ld, n = r1 - r0, c = j->c;
    sxp_labels lab = {p[1], ld[1], j->eps, j->ignore, j->has_ignore};
    switch (j->op) {
    case OP_FORWARD:
        (j->f64 ? k->forward_f64 : k->forward_f32)(p[0], ld[0], p[1], ld[1], n, c, j->flag);
        break;
    case OP_PAIR:
        (j->f64 ? k->pair_f64 : k->pair_f32)(j->flag, p[0], ld[0], p[1], ld[1], p[2], ld[2], n, c);
        break;
    case OP_JACOBIAN: {
        char *scr = j->scratch ? j->scratch + (size_t)slot * (size_t)(c > 0 ? c : 1) * 8 : NULL;
        if (j->f64)
            k->jacobian_f64(p[0], ld[0], p[1], ld[1], n, c, j->flag, (double *)scr);
        else
            k->jacobian_f32(p[0], ld[0], p[1], ld[1], n, c, j->flag, (float *)scr);
        break;
    }
    case OP_LSE:
        (j->f64 ? k->logsumexp_f64 : k->logsumexp_f32)(p[0], ld[0], p[1], ld[1], n, c);
        break;
    case OP_LSE_VJP:
        (j->f64 ? k->logsumexp_vjp_f64 : k->logsumexp_vjp_f32)(p[0], ld[0], p[1], ld[1], p[2],
                                                               ld[2], p[3], ld[3], n, c);
        break;
    case OP_CE:
        (j->f64 ? k->ce_labels_f64 : k->ce_labels_f32)(p[0], ld[0], &lab, p[2], ld[2], p[3], ld[3],
                                                       n, c);
        break;
    case OP_CE_VJP:
        (j->f64 ? k->ce_labels_vjp_f64 : k->ce_labels_vjp_f32)(
            p[0], ld[0], &lab, p[2], ld[2], p[3], ld[3], p[4], ld[4], p[5], ld[5], n, c);
        break;
    case OP_EXP:
        for (sxp_ssize r = 0; r < n; r++) {
            if (j->f64)
                k->exp_f64((const double *)(p[0] + r * ld[0]), (double *)(p[1] + r * ld[1]), c);
            else
                k->exp_f32((const float *)(p[0] + r * ld[0]), (float *)(p[1] + r * ld[1]), c);
        }
        break;
    }
}

/* Bytes of one operand per piece a thread takes (the pieces are taken dynamically, so this only
 * sets the grain); a call is cut into at least four pieces per thread. */
#define PIECE_BYTES (1 << 20)

/* Operand i of the job: buffer b, advanced by its row stride per row of the call. */
static void set_operand(job *j, int i, const Py_buffer *b) {
    j->p[i] = (char *)b->buf;
    j->ld[i] = b->strides[0];
    j->step[i] = b->strides[0];
}

/* Run the job over n rows on up to `threads` threads (the GIL released). Returns the number of
 * threads that took part. */
static int run_job(job *j, sxp_ssize n, int threads) {
    sxp_ssize row_bytes = (j->c > 0 ? j->c : 1) * (j->f64 ? 8 : 4);
    if (j->op == OP_JACOBIAN) row_bytes *= j->c > 0 ? j->c : 1; /* a row of y writes c rows */
    sxp_ssize piece = PIECE_BYTES / row_bytes;
    if (threads > 1) {
        sxp_ssize quarter = (n + 4 * (sxp_ssize)threads - 1) / (4 * (sxp_ssize)threads);
        if (quarter < piece) piece = quarter;
    }
    if (piece < 1) piece = 1;
    int used;
    Py_BEGIN_ALLOW_THREADS;
    used = sxp_pool_run(threads, n, piece, run_range, j);
    Py_END_ALLOW_THREADS;
    return used;
}

static job new_job(int op, int kind, sxp_ssize c) {
    job j;
    memset(&j, 0, sizeof j);
    j.k = K;
    j.op = op;
    j.f64 = kind == 1;
    j.c = c;
    return j;
}

static PyObject *py_forward(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    int log, threads = 1;
    if (!PyArg_ParseTuple(args, "OOp|i:forward", &objs[0], &objs[1], &log, &threads)) return NULL;
    Py_buffer b[2];
    int kind = get_rows(objs, b, 2);
    if (kind < 0) return NULL;
    job j = new_job(OP_FORWARD, kind, b[0].shape[1]);
    j.flag = log;
    for (int i = 0; i < 2; i++) set_operand(&j, i, &b[i]);
    int used = run_job(&j, b[0].shape[0], threads);
    release(b, 2);
    return PyLong_FromLong(used);
}

static PyObject *run_pair(PyObject *args, const char *fmt, int pair_kind) {
    PyObject *objs[3];
    int threads = 1;
    if (!PyArg_ParseTuple(args, fmt, &objs[0], &objs[1], &objs[2], &threads)) return NULL;
    Py_buffer b[3];
    int kind = get_rows(objs, b, 3);
    if (kind < 0) return NULL;
    job j = new_job(OP_PAIR, kind, b[0].shape[1]);
    j.flag = pair_kind;
    for (int i = 0; i < 3; i++) set_operand(&j, i, &b[i]);
    int used = run_job(&j, b[0].shape[0], threads);
    release(b, 3);
    return PyLong_FromLong(used);
}

static PyObject *py_prod(PyObject *self, PyObject *args) { return run_pair(args, "OOO|i:prod", 0); }

static PyObject *py_log_vjp(PyObject *self, PyObject *args) {
    return run_pair(args, "OOO|i:log_vjp", 1);
}

static PyObject *py_log_jvp(PyObject *self, PyObject *args) {
    return run_pair(args, "OOO|i:log_jvp", 2);
}

static PyObject *py_jacobian(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    int take_log, threads = 1;
    if (!PyArg_ParseTuple(args, "OOp|i:jacobian", &objs[0], &objs[1], &take_log, &threads))
        return NULL;
    Py_buffer b[2];
    if (PyObject_GetBuffer(objs[0], &b[0], PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(objs[1], &b[1], PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&b[0]);
        return NULL;
    }
    int kind = kind_of(&b[0]);
    Py_ssize_t n = b[0].ndim == 2 ? b[0].shape[0] : -1, c = b[0].ndim == 2 ? b[0].shape[1] : -1;
    if (kind < 0 || b[0].ndim != 2 || b[1].ndim != 2 || kind_of(&b[1]) != kind ||
        b[1].shape[0] != n * c || b[1].shape[1] != c ||
        (c > 1 && (b[0].strides[1] != b[0].itemsize || b[1].strides[1] != b[1].itemsize))) {
        PyErr_SetString(PyExc_ValueError,
                        "jacobian: expected y (n, c) and out (n * c, c), float32/float64, with "
                        "contiguous rows");
        release(b, 2);
        return NULL;
    }
    if (threads > SXP_POOL_MAX) threads = SXP_POOL_MAX;
    if (threads < 1) threads = 1;
    job j = new_job(OP_JACOBIAN, kind, c);
    j.flag = take_log;
    for (int i = 0; i < 2; i++) set_operand(&j, i, &b[i]);
    j.step[1] = c * b[1].strides[0]; /* c rows of out per row of y */
    if (take_log) {
        j.scratch = PyMem_RawMalloc((size_t)threads * (size_t)(c > 0 ? c : 1) * 8);
        if (j.scratch == NULL) {
            release(b, 2);
            return PyErr_NoMemory();
        }
    }
    int used = run_job(&j, n, threads);
    PyMem_RawFree(j.scratch);
    release(b, 2);
    return PyLong_FromLong(used);
}

/* Acquire a 1-D buffer of n items of dtype kind (any stride), writable if asked. Returns 0, or
 * -1 with an exception set (nothing acquired). */
static int get_items(PyObject *obj, Py_buffer *b, int writable, Py_ssize_t n, int kind,
                     const char *what) {
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) < 0) return -1;
    if (b->ndim != 1 || kind_of(b) != kind || b->shape[0] != n) {
        PyErr_Format(PyExc_ValueError,
                     "%s: expected a 1-D buffer of the rows' dtype with one item per row", what);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* logsumexp(x, out[, threads]): x (n, c) with contiguous rows, out (n,) of the same dtype. */
static PyObject *py_logsumexp(PyObject *self, PyObject *args) {
    PyObject *x, *out;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "OO|i:logsumexp", &x, &out, &threads)) return NULL;
    Py_buffer b[2];
    if (PyObject_GetBuffer(x, &b[0], PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    int kind = kind_of(&b[0]);
    if (kind < 0 || b[0].ndim != 2 || (b[0].shape[1] > 1 && b[0].strides[1] != b[0].itemsize)) {
        PyErr_SetString(PyExc_ValueError,
                        "logsumexp: expected x, a 2-D float32/float64 buffer with contiguous rows");
        release(b, 1);
        return NULL;
    }
    if (get_items(out, &b[1], 1, b[0].shape[0], kind, "logsumexp: out") < 0) {
        release(b, 1);
        return NULL;
    }
    job j = new_job(OP_LSE, kind, b[0].shape[1]);
    for (int i = 0; i < 2; i++) set_operand(&j, i, &b[i]);
    int used = run_job(&j, b[0].shape[0], threads);
    release(b, 2);
    return PyLong_FromLong(used);
}

/* logsumexp_vjp(x, lse, g, out[, threads]): x and out (n, c) with contiguous rows, lse and g
 * (n,). */
static PyObject *py_logsumexp_vjp(PyObject *self, PyObject *args) {
    PyObject *objs[2], *lo, *go;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "OOOO|i:logsumexp_vjp", &objs[0], &lo, &go, &objs[1], &threads))
        return NULL;
    Py_buffer b[2], v[2];
    int kind = get_rows(objs, b, 2);
    if (kind < 0) return NULL;
    if (get_items(lo, &v[0], 0, b[0].shape[0], kind, "logsumexp_vjp: lse") < 0) {
        release(b, 2);
        return NULL;
    }
    if (get_items(go, &v[1], 0, b[0].shape[0], kind, "logsumexp_vjp: g") < 0) {
        release(v, 1);
        release(b, 2);
        return NULL;
    }
    job j = new_job(OP_LSE_VJP, kind, b[0].shape[1]);
    set_operand(&j, 0, &b[0]);
    set_operand(&j, 1, &v[0]);
    set_operand(&j, 2, &v[1]);
    set_operand(&j, 3, &b[1]);
    int used = run_job(&j, b[0].shape[0], threads);
    release(v, 2);
    release(b, 2);
    return PyLong_FromLong(used);
}

/* Acquire labels, a 1-D buffer of n native int64 items (any stride). Returns 0, or -1 with an
 * exception set (nothing acquired). */
static int get_labels(PyObject *obj, Py_buffer *b, Py_ssize_t n, const char *what) {
    if (PyObject_GetBuffer(obj, b, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return -1;
    const char *f = b->format;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (b->ndim != 1 || b->shape[0] != n || b->itemsize != 8 || (f[0] != 'q' && f[0] != 'l') ||
        f[1] != '\0') {
        PyErr_Format(PyExc_ValueError, "%s: expected a 1-D int64 buffer with one item per row",
                     what);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* ce_labels(x, labels, eps, ignore, has_ignore, loss, lse[, threads]): x (n, c) with contiguous
 * rows; labels (n,) int64; loss and lse (n,) of x's dtype, written. */
static PyObject *py_ce_labels(PyObject *self, PyObject *args) {
    PyObject *x, *lab, *lo, *ls;
    double eps;
    long long ignore;
    int has_ignore, threads = 1;
    if (!PyArg_ParseTuple(args, "OOdLpOO|i:ce_labels", &x, &lab, &eps, &ignore, &has_ignore, &lo,
                          &ls, &threads))
        return NULL;
    Py_buffer b[4];
    if (PyObject_GetBuffer(x, &b[0], PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    int kind = kind_of(&b[0]);
    if (kind < 0 || b[0].ndim != 2 || (b[0].shape[1] > 1 && b[0].strides[1] != b[0].itemsize)) {
        PyErr_SetString(PyExc_ValueError,
                        "ce_labels: expected x, a 2-D float32/float64 buffer with contiguous rows");
        release(b, 1);
        return NULL;
    }
    Py_ssize_t n = b[0].shape[0];
    if (get_labels(lab, &b[1], n, "ce_labels: labels") < 0) {
        release(b, 1);
        return NULL;
    }
    if (get_items(lo, &b[2], 1, n, kind, "ce_labels: loss") < 0) {
        release(b, 2);
        return NULL;
    }
    if (get_items(ls, &b[3], 1, n, kind, "ce_labels: lse") < 0) {
        release(b, 3);
        return NULL;
    }
    job j = new_job(OP_CE, kind, b[0].shape[1]);
    for (int i = 0; i < 4; i++) set_operand(&j, i, &b[i]);
    j.eps = eps;
    j.ignore = ignore;
    j.has_ignore = has_ignore;
    int used = run_job(&j, n, threads);
    release(b, 4);
    return PyLong_FromLong(used);
}

/* ce_labels_vjp(x, labels, lse, g, h, eps, ignore, has_ignore, out[, threads]): x and out (n, c)
 * with contiguous rows; labels (n,) int64; lse, g, h (n,) of x's dtype. */
static PyObject *py_ce_labels_vjp(PyObject *self, PyObject *args) {
    PyObject *objs[2], *lab, *items[3];
    double eps;
    long long ignore;
    int has_ignore, threads = 1;
    if (!PyArg_ParseTuple(args, "OOOOOdLpO|i:ce_labels_vjp", &objs[0], &lab, &items[0],
                          &items[1], &items[2], &eps, &ignore, &has_ignore, &objs[1], &threads))
        return NULL;
    static const char *names[3] = {"ce_labels_vjp: lse", "ce_labels_vjp: g", "ce_labels_vjp: h"};
    Py_buffer b[2], v[4];
    int kind = get_rows(objs, b, 2);
    if (kind < 0) return NULL;
    Py_ssize_t n = b[0].shape[0];
    if (get_labels(lab, &v[3], n, "ce_labels_vjp: labels") < 0) {
        release(b, 2);
        return NULL;
    }
    for (int i = 0; i < 3; i++)
        if (get_items(items[i], &v[i], 0, n, kind, names[i]) < 0) {
            release(v, i);
            PyBuffer_Release(&v[3]);
            release(b, 2);
            return NULL;
        }
    job j = new_job(OP_CE_VJP, kind, b[0].shape[1]);
    set_operand(&j, 0, &b[0]);
    set_operand(&j, 1, &v[3]);
    for (int i = 0; i < 3; i++) set_operand(&j, 2 + i, &v[i]);
    set_operand(&j, 5, &b[1]);
    j.eps = eps;
    j.ignore = ignore;
    j.has_ignore = has_ignore;
    int used = run_job(&j, n, threads);
    release(v, 4);
    release(b, 2);
    return PyLong_FromLong(used);
}

static PyObject *py_exp(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    int threads = 1;
    if (!PyArg_ParseTuple(args, "OO|i:exp", &objs[0], &objs[1], &threads)) return NULL;
    Py_buffer b[2];
    int kind = get_rows(objs, b, 2);
    if (kind < 0) return NULL;
    job j = new_job(OP_EXP, kind, b[0].shape[1]);
    for (int i = 0; i < 2; i++) set_operand(&j, i, &b[i]);
    int used = run_job(&j, b[0].shape[0], threads);
    release(b, 2);
    return PyLong_FromLong(used);
}

static PyObject *py_pool_workers(PyObject *self, PyObject *noargs) {
    return PyLong_FromLong(sxp_pool_workers());
}

/* madvise(MADV_HUGEPAGE) on the whole pages inside [address, address + nbytes): what NumPy does
 * for its own large allocations. Called on a fresh, untouched output buffer, it lets the kernel
 * fault it in 2 MiB pages instead of 4 KiB ones (512 times fewer page faults). Advice only: it
 * changes no result, and a kernel without transparent huge pages ignores it (errors ignored). */
static PyObject *py_advise_hugepages(PyObject *self, PyObject *args) {
    unsigned long long address;
    Py_ssize_t nbytes;
    if (!PyArg_ParseTuple(args, "Kn:advise_hugepages", &address, &nbytes)) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)address + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)address + (uintptr_t)nbytes) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#endif
    Py_RETURN_NONE;
}

static PyObject *py_isa(PyObject *self, PyObject *noargs) { return PyUnicode_FromString(K->name); }

static PyObject *py_isa_levels(PyObject *self, PyObject *noargs) {
    PyObject *t = PyTuple_New(n_usable);
    for (int i = 0; t != NULL && i < n_usable; i++) {
        PyObject *name = PyUnicode_FromString(usable[i]->name);
        if (name == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, name);
    }
    return t;
}

static int find_level(const char *name) {
    for (int i = 0; i < n_usable; i++)
        if (strcmp(usable[i]->name, name) == 0) return i;
    return -1;
}

/* use_isa(name): run the kernels of level `name` from now on; returns the previous level's name.
 * For tests and the benchmark, which compare the levels in one process; results are the same at
 * every level up to rounding (every level is tested). */
static PyObject *py_use_isa(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s:use_isa", &name)) return NULL;
    int i = find_level(name);
    if (i < 0) {
        PyObject *levels = py_isa_levels(self, NULL);
        if (levels != NULL)
            PyErr_Format(PyExc_ValueError, "use_isa: name must be one of %R, got %R", levels,
                         PyTuple_GET_ITEM(args, 0));
        Py_XDECREF(levels);
        return NULL;
    }
    const char *previous = K->name;
    K = usable[i];
    return PyUnicode_FromString(previous);
}

static PyMethodDef methods[] = {
    {"isa", py_isa, METH_NOARGS, "isa(): the instruction-set level the kernels run at."},
    {"isa_levels", py_isa_levels, METH_NOARGS,
     "isa_levels(): the levels this build holds that the CPU runs, best first."},
    {"use_isa", py_use_isa, METH_VARARGS,
     "use_isa(name): run at level name from now on (for tests and benchmarks); returns the old."},
    {"advise_hugepages", py_advise_hugepages, METH_VARARGS,
     "advise_hugepages(address, nbytes): madvise(MADV_HUGEPAGE) on a fresh buffer (Linux)."},
    {"forward", py_forward, METH_VARARGS,
     "forward(x, out, log): softmax (log_softmax if log) of each row of x into out."},
    {"prod", py_prod, METH_VARARGS, "prod(y, v, out): out = y * (v - <y, v>) per row."},
    {"log_vjp", py_log_vjp, METH_VARARGS,
     "log_vjp(l, g, out): out = g - exp(l) * sum(g) per row."},
    {"log_jvp", py_log_jvp, METH_VARARGS, "log_jvp(l, v, out): out = v - <exp(l), v> per row."},
    {"jacobian", py_jacobian, METH_VARARGS,
     "jacobian(y, out, log): dense Jacobians of the rows of y (n, c) into out (n * c, c)."},
    {"logsumexp", py_logsumexp, METH_VARARGS,
     "logsumexp(x, out): out[i] = log(sum(exp(x[i]))) per row of x (n, c); out (n,)."},
    {"logsumexp_vjp", py_logsumexp_vjp, METH_VARARGS,
     "logsumexp_vjp(x, lse, g, out): out = g[i] * exp(x[i] - lse[i]) per row (NaN where lse[i] "
     "is not finite); lse, g (n,)."},
    {"ce_labels", py_ce_labels, METH_VARARGS,
     "ce_labels(x, labels, eps, ignore, has_ignore, loss, lse): the softmax cross-entropy of each "
     "row of x (n, c) with its int64 label (smoothing eps; label `ignore` counts for nothing "
     "where has_ignore) into loss (n,), and its logsumexp into lse (n,), reading x once."},
    {"ce_labels_vjp", py_ce_labels_vjp, METH_VARARGS,
     "ce_labels_vjp(x, labels, lse, g, h, eps, ignore, has_ignore, out): out = (g S + h) "
     "softmax(x) - g t per row (t the smoothed one-hot target of a counted label, S its sum; "
     "NaN where lse is not finite); lse, g, h (n,)."},
    {"exp", py_exp, METH_VARARGS, "exp(x, out): the kernels' own exp, elementwise (for tests)."},
    {"pool_workers", py_pool_workers, METH_NOARGS,
     "pool_workers(): the worker threads the pool has started so far (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_rows",
    "Fused softmax row kernels in C for the NumPy fast path (private).", -1, methods,
};

PyMODINIT_FUNC PyInit__rows(void) {
    n_usable = sxp_usable_kernels(usable);
    K = usable[0];
    /* SOFTMAX_XP_ISA=avx2 (say) runs a lower level than the best, as on a CPU without the best;
     * a level this CPU or build lacks is an error, not a silent fallback. */
    const char *want = getenv("SOFTMAX_XP_ISA");
    if (want != NULL && want[0] != '\0') {
        int i = find_level(want);
        if (i < 0) {
            PyErr_Format(PyExc_ValueError,
                         "SOFTMAX_XP_ISA=%s: this CPU and build run only the levels from %s down "
                         "to %s",
                         want, usable[0]->name, usable[n_usable - 1]->name);
            return NULL;
        }
        K = usable[i];
    }
    return PyModule_Create(&moduledef);
}
