// Label colours blended over the image, as PaddleSeg's visualize does with
// cv2.addWeighted(image, weight, colours, 1 - weight, 0) on uint8 BGR: each product rounded to float
// on its own (no fused multiply-add), the sum rounded half to even and saturated, like cvRound.
extern "C" __global__ void overlay_bgr(const unsigned char* __restrict__ image, const unsigned char* __restrict__ labels,
                                       const unsigned char* __restrict__ palette_bgr, unsigned char* __restrict__ out,
                                       int height, int width, float weight, float other) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const size_t pixel = (size_t)y * width + x;
    const unsigned char* colour = palette_bgr + 3 * (int)labels[pixel];
    for (int c = 0; c < 3; ++c) {
        const float blended = __fadd_rn(__fmul_rn((float)image[3 * pixel + c], weight), __fmul_rn((float)colour[c], other));
        out[3 * pixel + c] = (unsigned char)min(max(__float2int_rn(blended), 0), 255);
    }
}

// A BGR image (even sides) into I420 planes (Y, then U and V at half resolution) for a video encoder,
// BT.601 at limited range as swscale converts BGR for PyAV by default (and as the video is tagged): the
// CPU conversion was the bound of the overlay video. One thread per 2x2 block; its chroma from the
// block's mean colour, the MPEG-1 siting FFmpeg's default conversion also gives.
__device__ __forceinline__ float bt601_luma(float b, float g, float r) { return 0.114f * b + 0.587f * g + 0.299f * r; }

extern "C" __global__ void bgr_to_i420(const unsigned char* __restrict__ bgr, int height, int width,
                                       unsigned char* __restrict__ planes) {
    const int cx = blockIdx.x * blockDim.x + threadIdx.x;
    const int cy = blockIdx.y * blockDim.y + threadIdx.y;
    if (2 * cx >= width || 2 * cy >= height) return;
    float sum_b = 0.0f, sum_g = 0.0f, sum_r = 0.0f;
    for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
            const size_t pixel = (size_t)(2 * cy + dy) * width + 2 * cx + dx;
            const float b = bgr[3 * pixel], g = bgr[3 * pixel + 1], r = bgr[3 * pixel + 2];
            planes[pixel] = (unsigned char)__float2int_rn(16.0f + bt601_luma(b, g, r) * (219.0f / 255.0f));
            sum_b += b; sum_g += g; sum_r += r;
        }
    }
    const float b = 0.25f * sum_b, g = 0.25f * sum_g, r = 0.25f * sum_r, luma = bt601_luma(b, g, r);
    const size_t luma_bytes = (size_t)height * width, chroma = (size_t)cy * (width / 2) + cx;
    planes[luma_bytes + chroma] = (unsigned char)__float2int_rn(128.0f + (b - luma) * (224.0f / 255.0f / 1.772f));
    planes[luma_bytes + luma_bytes / 4 + chroma] = (unsigned char)__float2int_rn(128.0f + (r - luma) * (224.0f / 255.0f / 1.402f));
}
