/** How the inspector shows a body the trace kept: pretty JSON when it parses, text when it is text, a hex dump otherwise. */
import { TRACE_BODY_PREVIEW_BYTES, type TraceBody } from '../../../../shared/trace';
import { formatCount } from '../../../../shared/describe';

export interface BodyView {
  /** what the body pane shows ('' when the preview was dropped) */
  text: string;
  as: 'json' | 'text' | 'hex' | 'none';
  /** the size line: full size, how much of it is kept, and why not more */
  note: string;
}

const bytesText = (n: number): string => `${formatCount(n)} byte${n === 1 ? '' : 's'}`;

/** A hex dump of bytes: offset, 16 bytes in hex, the same as ASCII (dots for the rest). */
export function hexDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += 16) {
    const row = bytes.subarray(offset, offset + 16);
    const hex = Array.from(row, (byte) => byte.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (byte) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : '.')).join('');
    lines.push(`${offset.toString(16).padStart(6, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

function fromBase64(text: string): Uint8Array {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function bodyView(body: TraceBody): BodyView {
  const cut = body.shown < body.bytes;
  if (body.dropped) {
    return { text: '', as: 'none', note: `${bytesText(body.bytes)} (${body.encoding}); its preview was dropped to keep the trace within its memory budget.` };
  }
  if (body.bytes === 0) return { text: '', as: 'none', note: 'Empty body (0 bytes).' };
  const note = cut
    ? `${bytesText(body.bytes)}, first ${bytesText(body.shown)} kept (the trace keeps at most ${TRACE_BODY_PREVIEW_BYTES / 1024} KiB of a body).`
    : `${bytesText(body.bytes)}.`;
  if (body.encoding === 'binary') {
    try {
      return { text: hexDump(fromBase64(body.preview)), as: 'hex', note: `${note} Not text: shown as hex.` };
    } catch {
      return { text: body.preview, as: 'text', note };
    }
  }
  if (body.encoding === 'json' && !cut) {
    try {
      return { text: JSON.stringify(JSON.parse(body.preview), null, 2), as: 'json', note };
    } catch {
      return { text: body.preview, as: 'text', note: `${note} Not valid JSON: shown as text.` };
    }
  }
  return { text: body.preview, as: 'text', note };
}
