#pragma once
// Half precision is stored as 16-bit words and converted with PTX, so NVRTC needs no CUDA headers
// (pip-installed NVRTC ships none).
typedef unsigned short half_bits;
__device__ __forceinline__ half_bits f32_to_f16(float v) {
    half_bits h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
__device__ __forceinline__ float f16_to_f32(half_bits h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
