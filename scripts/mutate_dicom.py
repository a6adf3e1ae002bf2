"""Mutation campaign over medico's DICOM reader (not a coverage-guided fuzzer, and not run in CI): mutates
copies of three shared DICOM files (byte flips, huge length values, deletions), runs `medico-cli info` on each
under /usr/bin/time, and lists every run that panicked (exit 101) or held more than 512 MB.
Usage: source scripts/env.sh; python3 scripts/mutate_dicom.py RUNS [SEED]   (after a debug build of medico-cli)"""
import os, random, sys, subprocess
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
srcs = ['emri_small_RLE.dcm', 'CT_small.dcm', 'JPGExtended.dcm']
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
panics, worst = [], (0, None)
n = int(sys.argv[1])
for i in range(n):
    name = srcs[i % 3]
    b = bytearray(open(os.path.join(ROOT, '..', 'shared', 'data', 'dicom', '') + name, 'rb').read())
    kind = rng.random()
    for _ in range(rng.randint(1, 10)):
        pos = rng.randrange(len(b))
        if kind < 0.6: b[pos] = rng.randrange(256)
        elif kind < 0.8: b[pos:pos+4] = rng.choice([b'\xff\xff\xff\x7f', b'\x00\x00\x00\xf0', b'\xff\xff\xff\xff'])
        else: del b[pos:pos+rng.randrange(1, 64)]
    work = os.environ.get('TMPDIR', '/tmp'); p = os.path.join(work, 'medico-mutated.dcm'); open(p, 'wb').write(b)
    r = subprocess.run(['/usr/bin/time', '-f', '%M', os.path.join(ROOT, 'target', 'debug', 'medico-cli'), 'info', p], capture_output=True, text=True)
    if r.returncode == 127:
        sys.exit('medico-cli did not start (source scripts/env.sh first): ' + r.stderr.strip()[:200])
    rss_kb = int(r.stderr.strip().splitlines()[-1])
    if rss_kb > worst[0]: worst = (rss_kb, name)
    if r.returncode == 101 or rss_kb > 512 * 1024:
        keep = os.path.join(work, f'medico-mutated-bad{i}.dcm'); os.rename(p, keep)
        panics.append((keep, r.returncode, rss_kb, r.stderr.strip().splitlines()[0][:160]))
print('runs', n, 'bad', len(panics), 'worst RSS MB', worst[0] // 1024, worst[1])
for x in panics[:10]: print(x)
