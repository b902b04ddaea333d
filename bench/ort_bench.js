#!/usr/bin/env node
/*
 * ort_bench.js - the ONNX Runtime anchor of `make bench` (see README.md).
 *
 * Loads bench/out/<model>_b<B>.onnx (exported by scripts/bench_ref.py from the same
 * reference ViT, forward stopping after block 10) with onnxruntime-node's CPU execution
 * provider, intra-op threads = --threads, inter-op threads 1, all graph optimisations, and
 * times one forward of batch B the same way as the other two benchmarks: warm-up (at
 * least one call and 0.5 s), then timed calls until at least 3 calls and --budget seconds.
 * The batch-1 model is also run on the check image to report its error against the
 * float64 PyTorch reference. Appends one JSON line per (model, batch) to --out; anything
 * that cannot run is written as {"status": "skipped", "reason": ...}, never dropped.
 *
 * Usage: node ort_bench.js [--models a,b] [--batches 1,8] [--threads 2] [--budget 6]
 *                          [--outdir bench/out] [--out bench/out/ort.jsonl] [--img 224]
 * --img: input side in pixels of every model given (run.sh: 448 for the dinov2_* models).
 */
'use strict';
const fs = require('fs');
const path = require('path');


/* ---- command line ------------------------------------------------------------------- */
function parseArgs(argv) {
    const a = {
        models: 'vit_s16,vit_b16,vit_b8', batches: '1,8', threads: 2, budget: 6, img: 224,
        outdir: path.join(__dirname, 'out'), out: path.join(__dirname, 'out', 'ort.jsonl'),
    };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i].replace(/^--/, '');
        if (!(k in a) || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
        a[k] = argv[++i];
    }
    a.models = a.models.split(',').filter(Boolean);
    a.batches = a.batches.split(',').filter(Boolean).map(Number);
    a.threads = Number(a.threads);
    a.budget = Number(a.budget);
    a.img = Number(a.img);
    return a;
}

/* ---- helpers ------------------------------------------------------------------------ */
const nowSec = () => Number(process.hrtime.bigint()) / 1e9;

/* Seeded N(0,1) input (Box-Muller over a 32-bit LCG): same shape and statistics as the
 * other benchmarks' inputs; the exact values do not matter for timing. */
function randomInput(n, seed) {
    const v = new Float32Array(n);
    let s = seed >>> 0;
    const u = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s + 0.5) / 4294967296; };
    for (let i = 0; i < n; i++) v[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
    return v;
}

/* A little-endian float32 file as a Float32Array. */
function readF32(file) {
    const b = fs.readFileSync(file);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

/* max |out - ref| / max |ref| */
function relErr(out, ref) {
    if (out.length !== ref.length) return null;
    let md = 0, mr = 0;
    for (let i = 0; i < ref.length; i++) {
        md = Math.max(md, Math.abs(out[i] - ref[i]));
        mr = Math.max(mr, Math.abs(ref[i]));
    }
    return md / Math.max(mr, 1e-30);
}

/* Warm-up, then timed calls; returns per-call seconds. */
async function timeCalls(fn, budget, minReps = 3, maxReps = 50) {
    const tEnd = nowSec() + 0.5;
    await fn();
    while (nowSec() < tEnd) await fn();
    const times = [];
    let spent = 0;
    while (times.length < maxReps && (times.length < minReps || spent < budget)) {
        const t0 = nowSec();
        await fn();
        const dt = nowSec() - t0;
        times.push(dt);
        spent += dt;
    }
    return times;
}

const median = (v) => {
    const s = [...v].sort((x, y) => x - y), n = s.length;
    return n % 2 ? s[n >> 1] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
};

/* ---- main --------------------------------------------------------------------------- */
async function main() {
    const args = parseArgs(process.argv.slice(2));
    const out = fs.openSync(args.out, 'a');
    const emit = (rec) => fs.writeSync(out, JSON.stringify(rec) + '\n');
    const skipAll = (reason) => {
        for (const model of args.models)
            for (const batch of args.batches)
                emit({ impl: 'ort', model, batch, status: 'skipped', reason });
    };

    let ort;
    try {
        ort = require('onnxruntime-node');
    } catch (e) {
        skipAll(`onnxruntime-node not loadable: ${String(e.message).split('\n')[0]}`);
        return;
    }
    const version = (() => {
        try { return require('onnxruntime-node/package.json').version; } catch (e) { return '?'; }
    })();
    const opts = {
        executionProviders: ['cpu'], intraOpNumThreads: args.threads, interOpNumThreads: 1,
        graphOptimizationLevel: 'all', executionMode: 'sequential',
    };

    for (const model of args.models) {
        let err = null; /* relative error of the batch-1 model on the check image */
        for (const batch of args.batches) {
            const file = path.join(args.outdir, `${model}_b${batch}.onnx`);
            const rec = { impl: 'ort', model, batch };
            let sess;
            try {
                if (!fs.existsSync(file)) throw new Error('no ONNX export in the output folder (PyTorch unavailable?)');
                sess = await ort.InferenceSession.create(file, opts);
                const feeds = (data) => ({
                    [sess.inputNames[0]]: new ort.Tensor('float32', data, [batch, 3, args.img, args.img]),
                });
                const chkIn = path.join(args.outdir, `${model}_check_in.f32`);
                const chkOut = path.join(args.outdir, `${model}_check_out.f32`);
                if (batch === 1 && fs.existsSync(chkIn) && fs.existsSync(chkOut)) {
                    const r = await sess.run(feeds(readF32(chkIn)));
                    err = relErr(r[sess.outputNames[0]].data, readF32(chkOut));
                }
                const input = feeds(randomInput(batch * 3 * args.img * args.img, 11 + batch));
                const times = await timeCalls(() => sess.run(input), args.budget);
                const best = Math.min(...times) / batch, med = median(times) / batch;
                Object.assign(rec, {
                    status: 'ok', threads: args.threads, reps: times.length,
                    ms_per_img: best * 1e3, ms_per_img_median: med * 1e3, rel_err: err, version,
                });
                process.stderr.write(`ort_bench: ${model} b${batch}: ${(best * 1e3).toFixed(1)} ms/img ` +
                    `(median ${(med * 1e3).toFixed(1)}, ${times.length} reps)\n`);
            } catch (e) {
                Object.assign(rec, { status: 'skipped', reason: String(e.message).split('\n')[0].slice(0, 200) });
            } finally {
                if (sess && sess.release) await sess.release();
            }
            emit(rec);
        }
    }
    fs.closeSync(out);
}

main().catch((e) => {
    process.stderr.write(`ort_bench: ${e.stack || e}\n`);
    process.exit(1);
});
