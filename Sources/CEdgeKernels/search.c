// Searches over float vectors: the sampler's passes over the vocabulary's logits, which skip nearly every value.
#include "exact.h"
#include "internal.h"

int64_t edge_first_above(const float *v, int64_t start, int64_t n, float floor) {
    const v8f f = { floor, floor, floor, floor, floor, floor, floor, floor };
    int64_t i = start;
    for (; i + 16 <= n; i += 16) {
        v8f a, b;
        memcpy(&a, v + i, sizeof a);
        memcpy(&b, v + i + 8, sizeof b);
        v8i above = (a > f) | (b > f);
        int32_t any = 0;
        for (int l = 0; l < 8; l++) any |= above[l];
        if (any) break;
    }
    for (; i < n; i++)
        if (v[i] > floor) return i;
    return n;
}
