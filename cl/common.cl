/*
 * common.cl — helpers shared by every clattn kernel: storage types and vectors of width VEC.
 *
 * Storage types are loaded and stored through the helpers below; all arithmetic is f32.
 *
 * Tunables (set by the host through -D, see src/plan.c clattn_tiling_build_options):
 *   STORAGE_F32   q, k, v are f32                                     required (the only one yet)
 *   OUT_F32       out is f32                                          required (the only one yet)
 *   VEC           width of the floatv vector type: 1, 2, 4, 8 or 16   default 4
 */

#if defined(STORAGE_F32)
typedef float storage_t;
#define LOAD_STORAGE(p, i) ((p)[(i)])
#else
#error "define the storage type of q, k, v (STORAGE_F32)"
#endif

#if defined(OUT_F32)
typedef float out_t;
#define STORE_OUT(p, i, x) ((p)[(i)] = (x))
#else
#error "define the storage type of out (OUT_F32)"
#endif

/* Running maxima start at a large finite negative, not -INFINITY: exp2(-inf - -inf) is NaN and
   some compilers fold it wrongly. */
#define NEG_BIG (-3.0e38f)

#ifndef VEC
#define VEC 4
#endif

#define HSUM2(x)  ((x).s0 + (x).s1)
#define HSUM4(x)  HSUM2((x).s01 + (x).s23)
#define HSUM8(x)  HSUM4((x).s0123 + (x).s4567)
#define HSUM16(x) HSUM8((x).s01234567 + (x).s89abcdef)
#define HMAX2(x)  fmax((x).s0, (x).s1)
#define HMAX4(x)  HMAX2(fmax((x).s01, (x).s23))
#define HMAX8(x)  HMAX4(fmax((x).s0123, (x).s4567))
#define HMAX16(x) HMAX8(fmax((x).s01234567, (x).s89abcdef))

#if VEC == 1
typedef float floatv;
typedef int intv;
#define VLOAD(i, p)     ((p)[(i)])
#define VSTORE(x, i, p) ((p)[(i)] = (x))
#define IOTA            0
#define HSUM(x)         (x)
#define HMAX(x)         (x)
#elif VEC == 2
typedef float2 floatv;
typedef int2 intv;
#define VLOAD(i, p)     vload2((i), (p))
#define VSTORE(x, i, p) vstore2((x), (i), (p))
#define IOTA            ((int2)(0, 1))
#define HSUM(x)         HSUM2(x)
#define HMAX(x)         HMAX2(x)
#elif VEC == 4
typedef float4 floatv;
typedef int4 intv;
#define VLOAD(i, p)     vload4((i), (p))
#define VSTORE(x, i, p) vstore4((x), (i), (p))
#define IOTA            ((int4)(0, 1, 2, 3))
#define HSUM(x)         HSUM4(x)
#define HMAX(x)         HMAX4(x)
#elif VEC == 8
typedef float8 floatv;
typedef int8 intv;
#define VLOAD(i, p)     vload8((i), (p))
#define VSTORE(x, i, p) vstore8((x), (i), (p))
#define IOTA            ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define HSUM(x)         HSUM8(x)
#define HMAX(x)         HMAX8(x)
#elif VEC == 16
typedef float16 floatv;
typedef int16 intv;
#define VLOAD(i, p)     vload16((i), (p))
#define VSTORE(x, i, p) vstore16((x), (i), (p))
#define IOTA            ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define HSUM(x)         HSUM16(x)
#define HMAX(x)         HMAX16(x)
#else
#error "VEC must be 1, 2, 4, 8 or 16"
#endif
