/*
 * embstore.store._halfconv: exact float16 -> float32 decoding in native code.
 *
 * Optional accelerator of embstore.store.decode.float16_to_float32 (the pure
 * NumPy version is used when this module is not built). Results are bit for
 * bit those of numpy's astype(float32), NaN payloads and signs included, for
 * all 65,536 float16 patterns (tests/test_float16_decode.py checks it).
 *
 * Two kernels, chosen at run time:
 *
 * - "f16c": x86 CPUs with F16C and AVX convert 8 values per instruction
 *   (VCVTPH2PS). A group of 8 holding an infinity or NaN goes to the portable
 *   kernel instead (VCVTPH2PS quiets signalling NaNs; NumPy keeps them), and
 *   so does everything when MXCSR.DAZ is set (a library built with -ffast-math
 *   can set it), so that subnormal float16 values are never flushed to zero.
 * - "portable": branch-free integer arithmetic that compilers vectorise on any
 *   CPU: normal values are re-biased (exponent + 112), subnormal values are
 *   converted exactly as (mantissa * 2**-24), infinities and NaNs keep their
 *   payload. No floating-point input is subnormal, so DAZ/FTZ cannot change it.
 *
 * The GIL is released while converting.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define EMBSTORE_HAVE_F16C_KERNEL 1
#include <immintrin.h>
#endif

static inline uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void decode_portable(const uint16_t *restrict src, uint32_t *restrict dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t h = src[i];
        uint32_t em = h & 0x7fffu;                      /* exponent and mantissa */
        uint32_t is_sub = 0u - (uint32_t)(em < 0x0400u);  /* zero or subnormal */
        uint32_t is_special = 0u - (uint32_t)(em >= 0x7c00u); /* infinity or NaN */
        uint32_t normal = (em << 13) + 0x38000000u;       /* exponent bias 15 -> 127 */
        uint32_t sub = float_bits((float)(int32_t)em * 0x1p-24f); /* exact: em < 1024 */
        uint32_t special = 0x7f800000u | (em << 13);
        dst[i] = ((h & 0x8000u) << 16) | (sub & is_sub) | (normal & ~is_sub & ~is_special) |
                 (special & is_special);
    }
}

#ifdef EMBSTORE_HAVE_F16C_KERNEL
__attribute__((target("avx,f16c"))) static void decode_f16c(const uint16_t *restrict src,
                                                           uint32_t *restrict dst, size_t n) {
    const __m128i exponent = _mm_set1_epi16(0x7c00);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i special = _mm_cmpeq_epi16(_mm_and_si128(h, exponent), exponent);
        if (_mm_movemask_epi8(special)) {
            decode_portable(src + i, dst + i, 8);
        } else {
            _mm256_storeu_ps((float *)(dst + i), _mm256_cvtph_ps(h));
        }
    }
    decode_portable(src + i, dst + i, n - i);
}

static int use_f16c(void) {
    /* MXCSR bit 6: denormals are zeros */
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c") &&
           !(_mm_getcsr() & 0x0040u);
}
#endif

static const char *kernel_name(void) {
#ifdef EMBSTORE_HAVE_F16C_KERNEL
    if (use_f16c()) {
        return "f16c";
    }
#endif
    return "portable";
}

static int check_buffer(Py_buffer *view, const char *what, Py_ssize_t itemsize, char format) {
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') {
        fmt++;
    }
    if (view->itemsize != itemsize || fmt[0] != format || fmt[1] != '\0') {
        PyErr_Format(PyExc_ValueError, "%s must hold %s values, got format '%s' (itemsize %zd)",
                     what, format == 'e' ? "float16" : "float32", view->format ? view->format : "B",
                     view->itemsize);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(decode_doc,
             "decode(src, dst, portable=False)\n--\n\n"
             "Write the float16 values of the C-contiguous buffer ``src`` into the\n"
             "C-contiguous float32 buffer ``dst`` (same number of values), exactly.\n"
             "``portable=True`` uses the portable kernel even where F16C is available.");

static PyObject *halfconv_decode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"", "", "portable", NULL};
    PyObject *src_obj, *dst_obj;
    int portable = 0;
    Py_buffer src, dst;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$p:decode", keywords, &src_obj, &dst_obj,
                                     &portable)) {
        return NULL;
    }
    if (PyObject_GetBuffer(src_obj, &src, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(dst_obj, &dst, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    PyObject *result = NULL;
    if (check_buffer(&src, "src", 2, 'e') < 0 || check_buffer(&dst, "dst", 4, 'f') < 0) {
        goto done;
    }
    if (src.len / 2 != dst.len / 4) {
        PyErr_Format(PyExc_ValueError, "src holds %zd values but dst %zd; they must match",
                     src.len / 2, dst.len / 4);
        goto done;
    }
    {
        const uint16_t *s = (const uint16_t *)src.buf;
        uint32_t *d = (uint32_t *)dst.buf;
        size_t n = (size_t)(src.len / 2);
        Py_BEGIN_ALLOW_THREADS
#ifdef EMBSTORE_HAVE_F16C_KERNEL
        if (!portable && use_f16c()) {
            decode_f16c(s, d, n);
        } else {
            decode_portable(s, d, n);
        }
#else
        (void)portable;
        decode_portable(s, d, n);
#endif
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return result;
}

PyDoc_STRVAR(kernel_doc, "kernel()\n--\n\nThe kernel ``decode`` uses now: \"f16c\" or \"portable\".");

static PyObject *halfconv_kernel(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(kernel_name());
}

static PyMethodDef halfconv_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))halfconv_decode, METH_VARARGS | METH_KEYWORDS,
     decode_doc},
    {"kernel", halfconv_kernel, METH_NOARGS, kernel_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef halfconv_module = {
    PyModuleDef_HEAD_INIT,
    "_halfconv",
    "Exact float16 -> float32 decoding in native code (see embstore.store.decode).",
    -1,
    halfconv_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__halfconv(void) { return PyModule_Create(&halfconv_module); }
