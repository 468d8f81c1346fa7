import { z } from 'zod';

/**
 * A list's `limit` query parameter: 1 to 100 written as plain digits, 20
 * when absent. Not z.coerce.number(), which reads `0x10` as 16, `1e1` as
 * 10 and ` 5` as 5: a limit written any other way is a bad limit (400).
 */
export const pageLimit = z
  .string()
  .regex(/^[0-9]{1,3}$/, 'limit is a whole number from 1 to 100, in digits')
  .transform(Number)
  .pipe(z.number().int().min(1).max(100))
  .default(20);
