/**
 * Preloaded into an app process (`node --import tsx --import <this file>`,
 * see `clockShifted` in spawned.ts): runs its wall clock CLOCK_SHIFT_MS ahead of the host's
 * (negative: behind), as on a host whose NTP sync has drifted or broken.
 * `Date.now()` and `new Date()` are shifted; timers and `performance.now()`
 * are not (they are monotonic). Given on the command line, not in
 * NODE_OPTIONS: the worker's lock-renewal thread starts with `execArgv: []`
 * and inherits NODE_OPTIONS, and cannot load a .ts file.
 */
const shift = Number(process.env.CLOCK_SHIFT_MS ?? '0');
if (Number.isFinite(shift) && shift !== 0) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  const shiftedNow = (): number => realNow() + shift;
  class ShiftedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(shiftedNow());
      else super(...(args as [string | number | Date]));
    }
    static override now(): number {
      return shiftedNow();
    }
  }
  RealDate.now = shiftedNow;
  (globalThis as { Date: DateConstructor }).Date = ShiftedDate as unknown as DateConstructor;
}
export {};
