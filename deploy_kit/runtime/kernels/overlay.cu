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
