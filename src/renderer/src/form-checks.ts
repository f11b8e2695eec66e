/** The numbers a user types, checked as they type with the core's own limits (src/core/contract-schemas.ts), each as one sentence. */

import { formatCount } from '../../shared/describe';

/** A number field bound with v-model.number: a number, or the raw text when the browser could not read one (an empty field is ''). */
export type NumberField = number | string | null | undefined;

function wholeNumberProblem(value: NumberField, what: string, min: number, max: number, unit = ''): string | undefined {
  const suffix = unit ? ` ${unit}` : '';
  if (value === '' || value === null || value === undefined) return `${what} is empty: type a whole number${suffix}.`;
  if (typeof value !== 'number' || !Number.isFinite(value)) return `${what} must be a number${suffix}.`;
  if (!Number.isInteger(value)) return `${what} must be a whole number${suffix}.`;
  if (value < min) return `${what} must be at least ${formatCount(min)}${suffix}.`;
  if (value > max) return `${what} must be at most ${formatCount(max)}${suffix}.`;
  return undefined;
}

/** The call timeout: 1 ms to 10 minutes, as `rpc.request.send` accepts. */
export const timeoutProblem = (value: NumberField): string | undefined => wholeNumberProblem(value, 'The timeout', 1, 600_000, 'ms');
/** Requests in a load run: 1 to 1,000,000. */
export const countProblem = (value: NumberField): string | undefined => wholeNumberProblem(value, 'The number of requests', 1, 1_000_000);
/** Requests in flight in a load run: 1 to 10,000. */
export const concurrencyProblem = (value: NumberField): string | undefined => wholeNumberProblem(value, 'The concurrency', 1, 10_000);
/** A load run traces 1 request in N in full: 1 (every one) to 10,000. */
export const traceEveryProblem = (value: NumberField): string | undefined => wholeNumberProblem(value, 'Trace 1 in', 1, 10_000);
