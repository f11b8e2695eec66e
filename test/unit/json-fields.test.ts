import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readTopLevelFields } from '../../src/core/trace/json-fields';

const read = (text: string, wanted = ['id', 'reply_to']): Record<string, unknown> | undefined => {
  const found = readTopLevelFields(Buffer.from(text), wanted);
  return found ? Object.fromEntries(found) : undefined;
};

describe('readTopLevelFields', () => {
  it('reads the id and reply_to of a request, whatever comes around them', () => {
    expect(read('{"id":"r-1","reply_to":"reply/a","params":{"x":[1,{"id":"inner"}]}}')).toEqual({ id: 'r-1', reply_to: 'reply/a' });
    expect(read(' { "params" : [ "}" , "\\"" , {"a":"]"} ] , "reply_to" : "reply/b" , "id" : 7 } ')).toEqual({ id: 7, reply_to: 'reply/b' });
  });

  it('agrees with JSON.parse on escaped keys and values, nested values and missing fields', () => {
    const samples = [
      '{"i\\u0064":"a\\"b\\\\","result":{"id":"nested"}}',
      '{"result":"x","worker":"worker-1","id":"r-9"}',
      '{"error":{"code":"c","message":"m"},"id":null}',
      '{}',
      '{"id":true,"reply_to":["a"]}',
    ];
    for (const sample of samples) {
      const parsed = JSON.parse(sample) as Record<string, unknown>;
      const expected = Object.fromEntries(['id', 'reply_to'].filter((key) => key in parsed).map((key) => [key, parsed[key]]));
      expect(read(sample)).toEqual(expected);
    }
  });

  it('agrees with JSON.parse on any object, compact or spaced, with escaped, non-ASCII and long keys and values', () => {
    const key = fc.oneof(fc.constantFrom('id', 'reply_to', 'params', 'i\u0064', 'reply\\_to'), fc.string({ maxLength: 60 }), fc.string({ unit: 'grapheme', maxLength: 8 }));
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ maxLength: 120 }), fc.string({ unit: 'binary', maxLength: 80 }), fc.uuid());
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 8 }), fc.boolean(), (object, spaced) => {
        const text = spaced ? JSON.stringify(object, null, 2) : JSON.stringify(object);
        const parsed = JSON.parse(text) as Record<string, unknown>;
        const expected = Object.fromEntries(['id', 'reply_to'].filter((name) => Object.hasOwn(parsed, name)).map((name) => [name, parsed[name]]));
        expect(read(text)).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });

  it('says a body that is not a JSON object has no fields', () => {
    for (const sample of ['done', '"id"', '[{"id":1}]', '{"id" 1}', '{"id":"open', '', '{"a":1,"id":2']) expect(read(sample)).toBeUndefined();
  });

  it('stops reading once every wanted field is found, so the rest of a large body is never parsed', () => {
    expect(read(`{"id":"r-2","reply_to":"reply/c","params":"${'x'.repeat(1000)}" this is not JSON`)).toEqual({ id: 'r-2', reply_to: 'reply/c' });
  });
});
