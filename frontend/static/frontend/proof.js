// Proof of work that lets a newcomer in when the site is busy with newcomers (config/proof_of_work.py):
// find a nonce whose SHA-256 of "challenge#nonce" starts with a number of zero bits. SHA-256 (FIPS 180-4) in
// plain JavaScript, since crypto.subtle is asynchronous per call (far slower for many small hashes) and
// missing outside HTTPS. Used by classify.js; benchmarks/newcomer_proof.py times it in Chromium.
(function () {
  "use strict";
  const SHA_K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
  const SHA_W = new Uint32Array(64);
  const SHA_IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

  // One 64-byte block of `m` at `off` into the state H (eight 32-bit words, updated in place).
  function compress(H, m, off) {
    const W = SHA_W;
    for (let i = 0; i < 16; i++) {
      const j = off + 4 * i;
      W[i] = (m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = W[i - 15], y = W[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + SHA_K[i] + W[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    H[0] = (H[0] + a) | 0; H[1] = (H[1] + b) | 0; H[2] = (H[2] + c) | 0; H[3] = (H[3] + d) | 0;
    H[4] = (H[4] + e) | 0; H[5] = (H[5] + f) | 0; H[6] = (H[6] + g) | 0; H[7] = (H[7] + h) | 0;
  }

  function zeroBits(words) {
    let bits = 0;
    for (const word of words) {
      if ((word >>> 0) === 0) { bits += 32; continue; }
      return bits + Math.clz32(word >>> 0);
    }
    return bits;
  }

  // Find a nonce whose SHA-256 of "challenge#nonce" starts with `bits` zero bits, yielding to the page every
  // few thousand tries so that it stays responsive. The challenge's whole 64-byte blocks are hashed once;
  // each try hashes only the rest (one or two blocks), written in place with no allocation.
  async function solveProof(challenge, bits) {
    const prefix = new TextEncoder().encode(challenge + "#");
    const fixed = prefix.length - (prefix.length % 64);
    const mid = SHA_IV.slice();
    for (let off = 0; off < fixed; off += 64) compress(mid, prefix, off);
    const rest = prefix.length - fixed;
    const tail = new Uint8Array(128);
    tail.set(prefix.subarray(fixed));
    const H = new Array(8);
    for (let nonce = 0; ; nonce++) {
      if (nonce % 8192 === 8191) await new Promise((resolve) => setTimeout(resolve, 0));
      const digits = String(nonce);
      let n = rest;
      for (let i = 0; i < digits.length; i++) tail[n++] = digits.charCodeAt(i);
      const blocks = n + 9 <= 64 ? 1 : 2;
      const end = blocks * 64;
      tail[n] = 0x80;
      tail.fill(0, n + 1, end - 4);
      const bitLength = (prefix.length + digits.length) * 8;
      tail[end - 4] = bitLength >>> 24; tail[end - 3] = (bitLength >>> 16) & 255;
      tail[end - 2] = (bitLength >>> 8) & 255; tail[end - 1] = bitLength & 255;
      for (let i = 0; i < 8; i++) H[i] = mid[i];
      compress(H, tail, 0);
      if (blocks === 2) compress(H, tail, 64);
      if (zeroBits(H) >= bits) return challenge + "#" + digits;
    }
  }

  window.CorroborateProof = { solve: solveProof };
})();
