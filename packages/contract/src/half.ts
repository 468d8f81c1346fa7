/**
 * FP16 on the wire: a tensor's FP16 values travel as their IEEE 754
 * half-precision bit patterns (two little-endian bytes each). The gateway
 * rounds the numbers of a JSON-form FP16 input with this, and the SDK the
 * numbers it packs into a b64 one, so both give the same bits.
 */

/** Round half to even: IEEE 754's default, what a float-to-half conversion does. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** A number's IEEE 754 half-precision bits, rounded to nearest even from the double (no float32 step, which could round twice). */
export function halfBits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  // 65520 is halfway between the largest half (65504) and the next step, which is infinity.
  if (a >= 65520) return sign | 0x7c00;
  // Subnormal (or zero): multiples of 2^-24; 1024 of them is the smallest normal, which the bits carry over to.
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  let mantissa = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (mantissa === 1024) {
    mantissa = 0;
    e++;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | mantissa;
}
