/** The one "message of a thrown value" helper: every face uses it, so a thrown value reads the same everywhere. */

/**
 * One sentence for whatever was thrown: an Error's message, or what the value was (`throw undefined` included). Never
 * throws. `thrower` names who threw when the value carries no message of its own (a handler, a listener, ...).
 */
export function messageOf(thrown: unknown, thrower = 'an operation'): string {
  try {
    return describeUnsafely(thrown, thrower);
  } catch {
    // a getter or proxy trap threw while we looked: name the kind of value without touching it again
    return `${thrower} threw ${kindOf(thrown)} that cannot be described`;
  }
}

function describeUnsafely(thrown: unknown, thrower: string): string {
  if (thrown instanceof Error) return thrown.message || `${thrower} threw ${thrown.name} without a message`;
  if (thrown === undefined || thrown === null) return `${thrower} threw ${String(thrown)}`;
  if (typeof thrown === 'object') {
    const message = (thrown as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return message;
    let shown: string;
    try {
      shown = JSON.stringify(thrown) ?? Object.prototype.toString.call(thrown);
    } catch {
      // circular or BigInt inside: name the kind of object instead
      shown = Object.prototype.toString.call(thrown);
    }
    return `${thrower} threw an object: ${shown.slice(0, 200)}`;
  }
  if (typeof thrown === 'string') return thrown === '' ? `${thrower} threw an empty string` : thrown;
  return `${thrower} threw ${typeof thrown === 'symbol' ? thrown.toString() : String(thrown)}`;
}

/** `typeof` cannot throw, even on a hostile proxy. */
function kindOf(thrown: unknown): string {
  const kind = typeof thrown;
  return kind === 'object' || kind === 'undefined' ? `an ${kind}` : `a ${kind}`;
}
