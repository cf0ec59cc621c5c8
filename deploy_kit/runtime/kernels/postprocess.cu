// Model output -> uint8 label map at the image's original size. Nearest-neighbour resize exactly as
// PaddleSeg's reverse_transform (paddle.nn.functional.interpolate, mode="nearest", align_corners=False):
// source index = (int)((float)in / out * dst_index), in float32.
#include "half.cuh"

__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ float as_float(half_bits v) { return f16_to_f32(v); }

__device__ __forceinline__ int nearest_source(int d, float ratio, int size) {
    return min((int)(ratio * (float)d), size - 1);
}

// Scores (logits or probabilities) NCHW of one image: argmax over C (first maximum wins, like numpy).
template <typename T>
__device__ void argmax_resize(const T* __restrict__ scores, int classes, int in_h, int in_w,
                              unsigned char* __restrict__ labels, int out_h, int out_w, float ratio_y, float ratio_x) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    const size_t plane = (size_t)in_h * in_w;
    const T* p = scores + (size_t)nearest_source(y, ratio_y, in_h) * in_w + nearest_source(x, ratio_x, in_w);
    float best = as_float(p[0]);
    int best_c = 0;
    for (int c = 1; c < classes; ++c) {
        const float v = as_float(p[c * plane]);
        if (v > best) { best = v; best_c = c; }
    }
    labels[(size_t)y * out_w + x] = (unsigned char)best_c;
}

extern "C" __global__ void argmax_resize_f32(const float* scores, int classes, int in_h, int in_w,
                                             unsigned char* labels, int out_h, int out_w, float ratio_y, float ratio_x) {
    argmax_resize<float>(scores, classes, in_h, in_w, labels, out_h, out_w, ratio_y, ratio_x);
}

extern "C" __global__ void argmax_resize_f16(const half_bits* scores, int classes, int in_h, int in_w,
                                             unsigned char* labels, int out_h, int out_w, float ratio_y, float ratio_x) {
    argmax_resize<half_bits>(scores, classes, in_h, in_w, labels, out_h, out_w, ratio_y, ratio_x);
}

// Label maps from an `output_op: argmax` model (int32), resized the same way.
extern "C" __global__ void labels_resize_i32(const int* in_labels, int in_h, int in_w,
                                             unsigned char* labels, int out_h, int out_w, float ratio_y, float ratio_x) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    const int v = in_labels[(size_t)nearest_source(y, ratio_y, in_h) * in_w + nearest_source(x, ratio_x, in_w)];
    labels[(size_t)y * out_w + x] = (unsigned char)v;
}
