// uint8 HWC BGR image -> NCHW model input, as PaddleSeg's Compose(to_rgb) + Resize(LINEAR) + Normalize
// compute it: the image is read as float32, resized by cv2.resize INTER_LINEAR (half-pixel centres,
// edge clamping, horizontal pass then vertical, float coefficients), then (v / 255 - mean) / std.
#include "half.cuh"

template <typename T> __device__ __forceinline__ T to_output(float v);
template <> __device__ __forceinline__ float to_output<float>(float v) { return v; }
template <> __device__ __forceinline__ half_bits to_output<half_bits>(float v) { return f32_to_f16(v); }

struct Tap {
    int i0, i1;
    float w0, w1;
};

// cv2's coefficient for destination index d: fx = (float)((d + 0.5) * scale - 0.5), clamped at the edges.
__device__ __forceinline__ Tap linear_tap(int d, double scale, int size) {
    float f = (float)((d + 0.5) * scale - 0.5);
    int s = (int)floorf(f);
    f -= (float)s;
    if (s < 0) { f = 0.f; s = 0; }
    if (s >= size - 1) { f = 0.f; s = size - 1; }
    Tap t;
    t.i0 = s;
    t.i1 = min(s + 1, size - 1);
    t.w0 = 1.f - f;
    t.w1 = f;
    return t;
}

template <typename T>
__device__ void preprocess(const unsigned char* __restrict__ src, int src_h, int src_w, int src_stride,
                           T* __restrict__ dst, int dst_h, int dst_w, double scale_y, double scale_x,
                           float mean0, float mean1, float mean2, float std0, float std1, float std2,
                           int to_rgb) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    const Tap tx = linear_tap(x, scale_x, src_w);
    const Tap ty = linear_tap(y, scale_y, src_h);
    const unsigned char* row0 = src + (size_t)ty.i0 * src_stride;
    const unsigned char* row1 = src + (size_t)ty.i1 * src_stride;
    const float mean[3] = {mean0, mean1, mean2};
    const float stdv[3] = {std0, std1, std2};
    const size_t plane = (size_t)dst_h * dst_w;
    for (int c = 0; c < 3; ++c) {
        const float h0 = (float)row0[tx.i0 * 3 + c] * tx.w0 + (float)row0[tx.i1 * 3 + c] * tx.w1;
        const float h1 = (float)row1[tx.i0 * 3 + c] * tx.w0 + (float)row1[tx.i1 * 3 + c] * tx.w1;
        const float v = h0 * ty.w0 + h1 * ty.w1;
        const int out_c = to_rgb ? 2 - c : c;
        dst[out_c * plane + (size_t)y * dst_w + x] = to_output<T>((v / 255.f - mean[out_c]) / stdv[out_c]);
    }
}

extern "C" __global__ void preprocess_f32(const unsigned char* src, int src_h, int src_w, int src_stride,
                                          float* dst, int dst_h, int dst_w, double scale_y, double scale_x,
                                          float m0, float m1, float m2, float s0, float s1, float s2, int to_rgb) {
    preprocess<float>(src, src_h, src_w, src_stride, dst, dst_h, dst_w, scale_y, scale_x, m0, m1, m2, s0, s1, s2, to_rgb);
}

extern "C" __global__ void preprocess_f16(const unsigned char* src, int src_h, int src_w, int src_stride,
                                          half_bits* dst, int dst_h, int dst_w, double scale_y, double scale_x,
                                          float m0, float m1, float m2, float s0, float s1, float s2, int to_rgb) {
    preprocess<half_bits>(src, src_h, src_w, src_stride, dst, dst_h, dst_w, scale_y, scale_x, m0, m1, m2, s0, s1, s2, to_rgb);
}
