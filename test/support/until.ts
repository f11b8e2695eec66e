/** Asking the management API again until it shows something (it lists connections and counts a few seconds late). */
export async function until<T>(what: string, read: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`The management API never showed ${what} in ${timeoutMs} ms.`);
    // No fixed pause: the next request goes as soon as this one is answered (the project's way of waiting on the API).
    await new Promise((resolve) => setImmediate(resolve));
  }
}
