/**
 * Request and reply bodies in the formats a user types or reads: JSON, text, hex, base64, a file's bytes. Pure and
 * free of Node's Buffer: Compose validates as the user types, the core and the CLI turn the same text into the same bytes.
 */
import type { ReplyBody } from './rpc';

/** json: the request envelope (id and reply_to added); every other format is sent exactly as given. */
export type PayloadFormat = 'json' | 'text' | 'hex' | 'base64' | 'file';

export const payloadFormats: readonly PayloadFormat[] = ['json', 'text', 'hex', 'base64', 'file'];

/** How each format is named next to the field. */
export const payloadFormatLabels: Record<PayloadFormat, string> = {
  json: 'JSON (id and reply_to added)',
  text: 'plain text (sent as typed)',
  hex: 'hex bytes',
  base64: 'base64 bytes',
  file: 'raw bytes from a file',
};

/** The largest file Compose reads: RabbitMQ 4.1's default maximum MQTT packet (16 MiB), so any broker takes it. */
export const MAX_FILE_PAYLOAD_BYTES = 16 * 1024 * 1024;

/** Said wherever a non-JSON body is chosen: the body cannot name the reply topic, only MQTT 5 can. */
export const RAW_BODY_NOTE =
  'A non-JSON body is sent exactly as given and carries no reply_to: BridgeScope still subscribes to the reply topic and waits, but only a server that reads the MQTT 5 Response Topic (AMQP header x-reply-to-topic, RabbitMQ 3.13+) can answer it.';

export type Decoded = { ok: true; bytes: Uint8Array } | { ok: false; message: string };

const encoder = new TextEncoder();

export function utf8Bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Hex digits in pairs; spaces, newlines, `:` and `-` may separate bytes, and each byte may start with 0x. */
export function decodeHex(text: string): Decoded {
  const digits = text.replace(/0x/gi, '').replace(/[\s:-]/g, '');
  const bad = /[^0-9a-f]/i.exec(digits);
  if (bad) return { ok: false, message: `Not valid hex: "${bad[0]}" is not a hex digit (0-9, a-f; spaces and : may separate bytes).` };
  if (digits.length % 2 === 1) return { ok: false, message: `Not valid hex: ${digits.length} digits, an odd number (each byte is two digits).` };
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = Number.parseInt(digits.slice(i * 2, i * 2 + 2), 16);
  return { ok: true, bytes };
}

/** Standard or URL-safe base64, whitespace ignored, padding optional. */
export function decodeBase64(text: string): Decoded {
  const compact = text.replace(/\s/g, '').replace(/-/g, '+').replace(/_/g, '/');
  const bad = /[^A-Za-z0-9+/=]/.exec(compact);
  if (bad) return { ok: false, message: `Not valid base64: "${bad[0]}" is not a base64 character (A-Z, a-z, 0-9, +, /).` };
  const body = compact.replace(/=+$/, '');
  if (body.includes('=')) return { ok: false, message: 'Not valid base64: "=" may only end the text, as padding.' };
  if (body.length % 4 === 1) return { ok: false, message: `Not valid base64: ${body.length} characters cannot be whole bytes (one too many or one missing).` };
  const padded = body + '='.repeat((4 - (body.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return { ok: true, bytes };
}

export function encodeBase64(bytes: Uint8Array): string {
  let binary = '';
  // In slices: String.fromCharCode takes its arguments on the stack.
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export function encodeHex(bytes: Uint8Array, separator = ' '): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join(separator);
}

/** The bytes of a non-JSON body as the user gave it (a file travels as base64). */
export function rawPayloadBytes(format: Exclude<PayloadFormat, 'json'>, text: string): Decoded {
  if (format === 'text') return { ok: true, bytes: utf8Bytes(text) };
  if (format === 'hex') return decodeHex(text);
  const decoded = decodeBase64(text);
  if (!decoded.ok && format === 'file') return { ok: false, message: 'The file could not be read as bytes: choose it again.' };
  return decoded;
}

/** One sentence for a body that cannot be sent as it stands, or undefined. Empty JSON is fine (a bare envelope). */
export function payloadProblem(format: PayloadFormat, text: string): string | undefined {
  if (format === 'json') {
    if (text.trim() === '') return undefined;
    try {
      JSON.parse(text);
      return undefined;
    } catch (err) {
      return `Not valid JSON: ${(err as Error).message}`;
    }
  }
  if (format === 'file' && text === '') return 'Choose a file to send.';
  const decoded = rawPayloadBytes(format, text);
  if (!decoded.ok) return decoded.message;
  if (format === 'file' && decoded.bytes.byteLength > MAX_FILE_PAYLOAD_BYTES) return fileTooLarge(decoded.bytes.byteLength);
  return undefined;
}

export function fileTooLarge(bytes: number): string {
  return `The file is ${formatBytes(bytes)}; Compose sends files of at most ${formatBytes(MAX_FILE_PAYLOAD_BYTES)} (RabbitMQ 4.1's default maximum MQTT packet).`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} byte${bytes === 1 ? '' : 's'}`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** `offset  hex bytes  ascii`, 16 bytes a line, the way `hexdump -C` shows them. */
export function hexDump(bytes: Uint8Array, maxBytes = 4096): string {
  const shown = bytes.subarray(0, maxBytes);
  const lines: string[] = [];
  for (let offset = 0; offset < shown.length; offset += 16) {
    const row = shown.subarray(offset, offset + 16);
    const hex = Array.from(row, (byte) => byte.toString(16).padStart(2, '0'));
    const left = hex.slice(0, 8).join(' ');
    const right = hex.slice(8).join(' ');
    const ascii = Array.from(row, (byte) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : '.')).join('');
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${left.padEnd(23)}  ${right.padEnd(23)}  |${ascii}|`);
  }
  if (bytes.length > shown.length) lines.push(`... ${bytes.length - shown.length} more bytes`);
  return lines.join('\n');
}

/** The bytes of a reply body as they arrived (JSON replies keep their text for this). */
export function replyBytes(body: ReplyBody): Uint8Array {
  if (body.kind === 'binary') {
    const decoded = decodeBase64(body.base64);
    return decoded.ok ? decoded.bytes : new Uint8Array();
  }
  if (body.kind === 'text') return utf8Bytes(body.text);
  return utf8Bytes(body.text ?? JSON.stringify(body.value));
}

export type ReplyView = 'auto' | 'text' | 'hex' | 'base64';

/** A reply body as the user asked to see it; `auto`: pretty JSON when it parses, text when UTF-8, else a hex dump. */
export function showReply(body: ReplyBody, view: ReplyView = 'auto'): string {
  if (view === 'auto') {
    if (body.kind === 'json') return JSON.stringify(body.value, null, 2);
    if (body.kind === 'text') return body.text;
    return hexDump(replyBytes(body));
  }
  const bytes = replyBytes(body);
  if (view === 'hex') return hexDump(bytes);
  if (view === 'base64') return encodeBase64(bytes);
  if (body.kind === 'text') return body.text;
  if (body.kind === 'json') return body.text ?? JSON.stringify(body.value);
  // Not UTF-8: the bytes that are not text show as U+FFFD.
  return new TextDecoder('utf-8').decode(bytes);
}

/**
 * The same bytes in another notation (for Compose's format switch): undefined when the text does not decode in its own
 * format, is empty, or its bytes are not UTF-8 and the new format is text or JSON. `file` is never a target.
 */
export function convertPayload(from: PayloadFormat, to: Exclude<PayloadFormat, 'file'>, text: string): string | undefined {
  if (text === '') return undefined;
  const decoded = from === 'json' ? ({ ok: true, bytes: utf8Bytes(text) } as const) : rawPayloadBytes(from, text);
  if (!decoded.ok) return undefined;
  if (to === 'hex') return encodeHex(decoded.bytes);
  if (to === 'base64') return encodeBase64(decoded.bytes);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(decoded.bytes);
  } catch {
    return undefined;
  }
}
