// A video decoder's NV12 frame (Y plane, then U and V interleaved at half resolution, rows `width`
// bytes apart) into packed BGR uint8, with the stream's matrix and range. The chroma is upsampled as
// the standard sites it (on the even columns, halfway between rows) by linear interpolation, as
// FFmpeg's swscale does in its accurate mode (video/colour.py's CPU path).
// y_scale/y_offset map Y to 0-255 (limited range: 255/219, 16); c_scale maps U-128 and V-128 likewise.

__device__ __forceinline__ float2 chroma_column(const unsigned char* uv, int width, int row0, int row1, float fy,
                                                int column) {
    const unsigned char* a = uv + (size_t)row0 * width + 2 * column;
    const unsigned char* b = uv + (size_t)row1 * width + 2 * column;
    return make_float2((float)a[0] * (1.0f - fy) + (float)b[0] * fy, (float)a[1] * (1.0f - fy) + (float)b[1] * fy);
}

extern "C" __global__ void nv12_to_bgr(const unsigned char* __restrict__ nv12, int height, int width,
                                       unsigned char* __restrict__ bgr, float y_scale, float y_offset,
                                       float c_scale, float rv, float gu, float gv, float bu) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const unsigned char* uv = nv12 + (size_t)height * width;
    const int chroma_rows = height / 2, chroma_columns = width / 2;
    // rows: centred between luma rows, edges repeated (OpenCV's INTER_LINEAR arithmetic)
    const float cy = (y + 0.5f) * 0.5f - 0.5f;
    int row0 = (int)floorf(cy);
    float fy = cy - (float)row0;
    if (row0 < 0) { row0 = 0; fy = 0.0f; }
    if (row0 >= chroma_rows - 1) { row0 = chroma_rows - 1; fy = 0.0f; }
    const int row1 = min(row0 + 1, chroma_rows - 1);
    // columns: co-sited with the even luma columns; an odd column takes the mean of its neighbours
    const int column = x >> 1;
    float2 c = chroma_column(uv, width, row0, row1, fy, column);
    if ((x & 1) && column + 1 < chroma_columns) {
        const float2 next = chroma_column(uv, width, row0, row1, fy, column + 1);
        c = make_float2((c.x + next.x) * 0.5f, (c.y + next.y) * 0.5f);
    }
    const float luma = ((float)nv12[(size_t)y * width + x] - y_offset) * y_scale;
    const float u = (c.x - 128.0f) * c_scale;
    const float v = (c.y - 128.0f) * c_scale;
    unsigned char* out = bgr + 3 * ((size_t)y * width + x);
    out[0] = (unsigned char)min(max(__float2int_rn(luma + bu * u), 0), 255);
    out[1] = (unsigned char)min(max(__float2int_rn(luma - gu * u - gv * v), 0), 255);
    out[2] = (unsigned char)min(max(__float2int_rn(luma + rv * v), 0), 255);
}
