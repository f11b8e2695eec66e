/** The topic map now lives in src/shared/topic-map.ts; this re-export only serves imports not yet moved (session, trace, diagnosis). */
export * from '../shared/topic-map';
