#!/usr/bin/env node
// Regenerates the tokenizer test fixtures from the native Hugging Face `tokenizers` library
// (through its Node binding). The C++ tests only read what this writes; they never run node.
//
//   mkdir -p /tmp/tokref && (cd /tmp/tokref && npm install @anush008/tokenizers@0.6.0)
//   bash scripts/fetch_tokenizers.sh
//   NODE_PATH=/tmp/tokref/node_modules node scripts/dev/tokenizer_reference.js
//
// Writes, under tests/fixtures/tokenizer/:
//   synth/<name>.json          small tokenizers built here to cover features the real files do not
//                              use (Split behaviours, Digits, NFKC, Metaspace, byte fallback, unk,
//                              lstrip/rstrip/single_word, templates, truncation, padding, ...)
//   <name>.expected.jsonl      one line per corpus.jsonl line: {"with_special": ids, "no_special":
//                              ids, "decode": decode(with_special ids) (left out when it equals the
//                              corpus line), "decode_skip": the same with skip_special_tokens (left
//                              out when equal to "decode"), "decode_plain": decode(no_special ids)
//                              (left out when the two id lists are equal), "decode_half": decode
//                              of the first half of the with_special ids (cuts characters apart)}
//   invalid_utf8.expected.jsonl  byte strings that are not UTF-8: {"hex", "<name>": ids, ...}, ids of
//                              the string Node makes of those bytes (each maximal invalid
//                              subsequence -> U+FFFD)
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('@anush008/tokenizers');

const root = path.resolve(__dirname, '..', '..');
const fixtures = path.join(root, 'tests', 'fixtures');
const outDir = path.join(fixtures, 'tokenizer');
const synthDir = path.join(outDir, 'synth');
fs.mkdirSync(synthDir, { recursive: true });

const corpus = fs.readFileSync(path.join(outDir, 'corpus.jsonl'), 'utf8')
  .split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));

// ------------------------------------------------------------------ synthetic tokenizers ----
function byteAlphabet() {
  const m = [];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    m.push(String.fromCodePoint(printable ? b : 256 + n++));
  }
  return m;
}

// A byte-level BPE: the 256 byte symbols plus the first qwen3 merges whose parts exist.
function byteLevelModel(nMerges) {
  const q = JSON.parse(fs.readFileSync(path.join(root, 'third_party', 'tokenizers', 'qwen3.json'), 'utf8'));
  const vocab = {};
  byteAlphabet().forEach((c, i) => { vocab[c] = i; });
  let next = 256;
  const merges = [];
  for (const m of q.model.merges) {
    if (merges.length >= nMerges) break;
    const [a, b] = Array.isArray(m) ? m : m.split(' ');
    if (!(a in vocab) || !(b in vocab)) continue;
    merges.push([a, b]);
    if (!((a + b) in vocab)) vocab[a + b] = next++;
  }
  return { vocab, merges, next };
}

// A tiny deterministic BPE trainer: symbols(word) gives the initial symbols, join(a, b) the merge.
function train(words, symbols, join, nMerges) {
  const seqs = [...words.entries()].map(([w, c]) => [symbols(w), c]);
  const merges = [];
  for (let k = 0; k < nMerges; k++) {
    const counts = new Map();
    for (const [s, c] of seqs) {
      for (let i = 0; i + 1 < s.length; i++) {
        const key = s[i] + '\u0000' + s[i + 1];
        counts.set(key, (counts.get(key) || 0) + c);
      }
    }
    let best = null, bestCount = 1;
    for (const [key, c] of counts) {
      if (c > bestCount || (c === bestCount && best !== null && key < best)) { best = key; bestCount = c; }
    }
    if (best === null) break;
    const [a, b] = best.split('\u0000');
    merges.push([a, b]);
    const merged = join(a, b);
    for (const entry of seqs) {
      const s = entry[0], o = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { o.push(merged); i++; } else o.push(s[i]);
      }
      entry[0] = o;
    }
  }
  return merges;
}

function trainingWords() {
  const words = new Map();
  for (const line of corpus) {
    if (!/^[\x00-\x7f]*$/.test(line) || line.length > 400) continue;  // ASCII lines only
    for (const w of line.split(/\s+/)) if (w) words.set(w, (words.get(w) || 0) + 1);
  }
  return words;
}

const T = (content, id, o = {}) => Object.assign(
  { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }, o);

function base(model) {
  return { version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
           pre_tokenizer: null, post_processor: null, decoder: null, model };
}

function bpe(vocab, merges, o = {}) {
  return Object.assign({ type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
                         end_of_word_suffix: null, fuse_unk: false, byte_fallback: false,
                         ignore_merges: false, vocab, merges }, o);
}

function makeSynthetic() {
  const out = {};
  const bl = byteLevelModel(600);
  const asStrings = bl.merges.map(([a, b]) => `${a} ${b}`);
  let id = bl.next;

  // GPT-2 style: NFKC, ByteLevel with prefix space + regex, template with <s> ... </s>, added
  // tokens with every option.
  {
    const t = base(bpe(bl.vocab, asStrings, { ignore_merges: true }));
    t.normalizer = { type: 'NFKC' };
    t.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
    t.decoder = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
    t.added_tokens = [
      T('<s>', id, { special: true }), T('</s>', id + 1, { special: true }),
      T('<mask>', id + 2, { special: true, lstrip: true }), T('[NL]', id + 3, { rstrip: true }),
      T('ｆｏｏ', id + 4, { normalized: true }), T('bar', id + 5, { single_word: true }),
      T('the', id + 6, { normalized: true }), T('<|endoftext|>', id + 7, { special: true }),
      T('<|im_start|>', id + 8, { special: true, lstrip: true, rstrip: true }),
      T('qq', id + 9, { single_word: true, lstrip: true }), T('<｜end▁of▁sentence｜>', id + 10, { special: true }),
    ];
    t.post_processor = { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
               { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [id], tokens: ['<s>'] },
                        '</s>': { id: '</s>', ids: [id + 1], tokens: ['</s>'] } } };
    out.synth_bytelevel = t;
  }
  // Split behaviours, Digits, NFD + Replace + Strip, Roberta template, array merges.
  {
    const t = base(bpe(bl.vocab, bl.merges));
    t.normalizer = { type: 'Sequence', normalizers: [
      { type: 'NFD' }, { type: 'Replace', pattern: { String: '  ' }, content: ' ' },
      { type: 'Strip', strip_left: false, strip_right: true }] };
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithPrevious', invert: false },
      { type: 'Digits', individual_digits: true },
      { type: 'Split', pattern: { Regex: '\\p{P}+' }, behavior: 'Contiguous', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] };
    t.decoder = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
    t.added_tokens = [T('<s>', id, { special: true }), T('</s>', id + 1, { special: true })];
    t.post_processor = { type: 'RobertaProcessing', sep: ['</s>', id + 1], cls: ['<s>', id],
                         trim_offsets: true, add_prefix_space: false };
    out.synth_split = t;
  }
  // More behaviours (MergedWithNext, inverted MergedWithPrevious, Removed, Digits grouped),
  // NFKD + Prepend, Bert template, truncation and fixed padding.
  {
    const t = base(bpe(bl.vocab, asStrings));
    t.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFKD' }, { type: 'Prepend', prepend: '>' },
      { type: 'Replace', pattern: { Regex: '\\s*\\n\\s*' }, content: '\n' }] };
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'MergedWithNext', invert: false },
      { type: 'Split', pattern: { Regex: '[aeiouAEIOU]' }, behavior: 'MergedWithPrevious', invert: true },
      { type: 'Split', pattern: { String: 'x' }, behavior: 'Removed', invert: false },
      { type: 'Digits', individual_digits: false },
      { type: 'Split', pattern: { Regex: "(?i:'s|'t)|\\w+" }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }] };
    t.decoder = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    t.added_tokens = [T('[CLS]', id, { special: true }), T('[SEP]', id + 1, { special: true }),
                      T('[PAD]', id + 2, { special: true })];
    t.post_processor = { type: 'BertProcessing', sep: ['[SEP]', id + 1], cls: ['[CLS]', id] };
    t.truncation = { direction: 'Left', max_length: 40, strategy: 'LongestFirst', stride: 0 };
    t.padding = { strategy: { Fixed: 48 }, direction: 'Right', pad_to_multiple_of: null, pad_id: id + 2,
                  pad_type_id: 0, pad_token: '[PAD]' };
    out.synth_split2 = t;
  }

  // SentencePiece-style BPE models trained here on the corpus' ASCII lines.
  const words = trainingWords();
  const spmWords = new Map([...words].map(([w, c]) => ['\u2581' + w, c]));
  const spmMerges = train(spmWords, (w) => [...w], (a, b) => a + b, 400);
  const spmVocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) spmVocab['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] = 3 + b;
  let n = 259;
  const chars = new Set();
  for (const w of spmWords.keys()) for (const c of w) chars.add(c);
  for (const c of [...chars].sort()) spmVocab[c] = n++;
  for (const [a, b] of spmMerges) if (!((a + b) in spmVocab)) spmVocab[a + b] = n++;
  const spmAdded = [T('<unk>', 0, { special: true }), T('<s>', 1, { special: true }), T('</s>', 2, { special: true })];
  // Llama-2 style: Prepend + Replace normalizer, no pre-tokenizer, byte fallback.
  {
    const t = base(bpe(spmVocab, spmMerges.map(([a, b]) => `${a} ${b}`),
                       { unk_token: '<unk>', fuse_unk: true, byte_fallback: true }));
    t.normalizer = { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' },
                                                     { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] };
    t.decoder = { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' },
      { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] };
    t.added_tokens = spmAdded;
    t.post_processor = { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } };
    out.synth_spm = t;
  }
  // Metaspace (prepend_scheme first), fused unk, no byte fallback, left padding to a multiple of 8.
  {
    const t = base(bpe(spmVocab, spmMerges, { unk_token: '<unk>', fuse_unk: true }));
    t.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: true };
    t.decoder = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: true };
    t.added_tokens = spmAdded;
    t.padding = { strategy: 'BatchLongest', direction: 'Left', pad_to_multiple_of: 8, pad_id: 2,
                  pad_type_id: 0, pad_token: '</s>' };
    out.synth_unk = t;
  }
  // Unfused unk, WhitespaceSplit, Metaspace without split, no decoder, a Sequence post-processor
  // (as official Llama-3 files have) whose template has a multi-id special token.
  {
    const t = base(bpe(spmVocab, spmMerges, { unk_token: '<unk>', fuse_unk: false }));
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' },
      { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: false }] };
    t.added_tokens = spmAdded;
    t.post_processor = { type: 'Sequence', processors: [
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                 { SpecialToken: { id: '<end>', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] },
                          '<end>': { id: '<end>', ids: [2, 0, 2], tokens: ['</s>', '<unk>', '</s>'] } } }] };
    out.synth_unk_nofuse = t;
  }
  // continuing_subword_prefix + end_of_word_suffix, BPEDecoder.
  {
    const sym = (w) => [...w].map((c, i, a) => (i ? '##' : '') + c + (i === a.length - 1 ? '</w>' : ''));
    const merges = train(words, sym, (a, b) => a + b.slice(2), 300);
    const vocab = { '<unk>': 0 };
    let k = 1;
    const init = new Set();
    for (const w of words.keys()) for (const s of sym(w)) init.add(s);
    for (const s of [...init].sort()) vocab[s] = k++;
    for (const [a, b] of merges) if (!((a + b.slice(2)) in vocab)) vocab[a + b.slice(2)] = k++;
    const t = base(bpe(vocab, merges, { unk_token: '<unk>', continuing_subword_prefix: '##',
                                        end_of_word_suffix: '</w>' }));
    t.pre_tokenizer = { type: 'WhitespaceSplit' };
    t.decoder = { type: 'BPEDecoder', suffix: '</w>' };
    t.added_tokens = [T('<unk>', 0, { special: true })];
    out.synth_prefix = t;
  }
  return out;
}

// ---------------------------------------------------------------------------- reference ----
async function expected(tok, lines) {
  const rows = [];
  for (const s of lines) {
    const w = (await tok.encode(s, null, { addSpecialTokens: true })).getIds();
    const ns = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
    const row = { with_special: w, no_special: ns };
    const d = await tok.decode(w, false), dskip = await tok.decode(w, true);
    if (d !== s) row.decode = d;
    if (dskip !== d) row.decode_skip = dskip;
    if (JSON.stringify(w) !== JSON.stringify(ns)) row.decode_plain = await tok.decode(ns, false);
    row.decode_half = await tok.decode(w.slice(0, Math.floor(w.length / 2)), false);
    rows.push(row);
  }
  return rows;
}

const invalidUtf8 = ['61ff62', 'eda080', 'e282', 'f09f98', 'c0af', 'f4908080', 'e28241', '80', 'ff',
                     'c3', '48656c6c6fc328776f726c64', 'f09f9880f09f98', 'e4bda0e5a5bdff20e4b896',
                     '3c7c696d5f7374617274fe7c3e', 'efbbbf61', 'fefe', 'f8888080', 'c1bf', 'e080af'];

(async () => {
  const synth = makeSynthetic();
  const toks = [
    ['qwen3', path.join(root, 'third_party', 'tokenizers', 'qwen3.json')],
    ['deepseek_v3', path.join(root, 'third_party', 'tokenizers', 'deepseek_v3.json')],
    ['llama3', path.join(root, 'third_party', 'tokenizers', 'llama3.json')],
    ['janus_tiny', path.join(fixtures, 'janus_tiny', 'tokenizer.json')],
    ['bagel_tiny', path.join(fixtures, 'bagel_tiny', 'tokenizer.json')],
  ];
  for (const [name, t] of Object.entries(synth)) {
    const file = path.join(synthDir, name + '.json');
    fs.writeFileSync(file, JSON.stringify(t) + '\n');
    toks.push([name, file]);
  }
  const bad = invalidUtf8.map((hex) => ({ hex }));
  for (const [name, file] of toks) {
    const tok = Tokenizer.fromFile(file);
    const rows = await expected(tok, corpus);
    fs.writeFileSync(path.join(outDir, name + '.expected.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    for (const b of bad) {
      const s = Buffer.from(b.hex, 'hex').toString('utf8');
      b[name] = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
    }
    console.log(`${name}: ${rows.length} lines`);
  }
  fs.writeFileSync(path.join(outDir, 'invalid_utf8.expected.jsonl'), bad.map((r) => JSON.stringify(r)).join('\n') + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
