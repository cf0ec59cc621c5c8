// Sliding-window inference (PaddleSeg's slide_inference): each crop's scores are added into the sums of
// one horizontal strip of the image, with a count per pixel; then argmax(sum / count) gives the strip's
// labels. One launch per crop on one stream, so overlapping crops never add at the same time, and every
// pixel sums its crops in PaddleSeg's order (the CPU twin, paddleseg/slide.py, adds in the same order).
#include "half.cuh"

__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ float as_float(half_bits v) { return f16_to_f32(v); }

// scores: classes x crop_h x crop_w of the crop whose top-left is (crop_y, crop_x) in the image.
// sums: classes x strip_rows x width, counts: strip_rows x width, for image rows strip_y .. strip_y + strip_rows.
template <typename T>
__device__ void accumulate(const T* __restrict__ scores, int classes, int crop_h, int crop_w, int crop_y, int crop_x,
                           float* __restrict__ sums, float* __restrict__ counts, int strip_y, int strip_rows, int width) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;  // row of the crop
    if (x >= crop_w || y >= crop_h) return;
    const int row = crop_y + y - strip_y;
    if (row < 0 || row >= strip_rows) return;
    const size_t plane = (size_t)strip_rows * width;
    const size_t at = (size_t)row * width + crop_x + x;
    const size_t crop_plane = (size_t)crop_h * crop_w;
    const T* p = scores + (size_t)y * crop_w + x;
    for (int c = 0; c < classes; ++c) sums[c * plane + at] += as_float(p[c * crop_plane]);
    counts[at] += 1.f;
}

extern "C" __global__ void accumulate_f32(const float* scores, int classes, int crop_h, int crop_w, int crop_y,
                                          int crop_x, float* sums, float* counts, int strip_y, int strip_rows, int width) {
    accumulate<float>(scores, classes, crop_h, crop_w, crop_y, crop_x, sums, counts, strip_y, strip_rows, width);
}

extern "C" __global__ void accumulate_f16(const half_bits* scores, int classes, int crop_h, int crop_w, int crop_y,
                                          int crop_x, float* sums, float* counts, int strip_y, int strip_rows, int width) {
    accumulate<half_bits>(scores, classes, crop_h, crop_w, crop_y, crop_x, sums, counts, strip_y, strip_rows, width);
}

// labels (the strip's rows, uint8) = argmax over classes of sums / counts; the first maximum wins, like numpy.
extern "C" __global__ void average_argmax(const float* __restrict__ sums, const float* __restrict__ counts,
                                          int classes, int strip_rows, int width, unsigned char* __restrict__ labels) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= strip_rows) return;
    const size_t plane = (size_t)strip_rows * width;
    const size_t at = (size_t)y * width + x;
    const float count = counts[at];
    float best = __fdiv_rn(sums[at], count);
    int best_c = 0;
    for (int c = 1; c < classes; ++c) {
        const float v = __fdiv_rn(sums[c * plane + at], count);
        if (v > best) { best = v; best_c = c; }
    }
    labels[at] = (unsigned char)best_c;
}
