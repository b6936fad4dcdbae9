// The generator of host-gpu/src/rng.rs, word for word (as in map.wgsl); the
// host puts this in front of the modules that draw random numbers.

fn hash32(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn rng_word(lo: u32, hi: u32, counter: u32) -> u32 {
    return hash32(hash32(hash32(counter ^ 0x9e3779b9u) + lo) ^ hi);
}

fn unit(lo: u32, hi: u32, counter: u32) -> f32 {
    return f32(rng_word(lo, hi, counter) >> 8u) * (1.0 / 16777216.0);
}

