#!/usr/bin/env python3
"""test_mma_emu.py: the tensor-core kernels' index arithmetic, checked lane by lane.

kernels/flash_attn.cu (bf16 flash attention) and kernels/upscale_tail.cu
(the fused decoder tail) place values in mma.sync.m16n8k16 fragments by
hand (32-bit shared-memory loads, ldmatrix.x2.trans, the accumulator reused
as the next A operand, quad shuffles). This machine has no GPU, so this
script replays those kernels in Python, one block at a time and one lane at
a time, with the same index expressions (a transcription: keep it in step
with the .cu files), while mma and ldmatrix are defined only from the PTX
ISA fragment tables. Unwritten shared memory is NaN, so reading a slot the
kernel never filled shows up. Outputs are compared with plain references:
attention on bf16-rounded q, k, v (the remaining error is P rounded to
bf16, ~1e-3; bound 5e-3), the decoder tail on bf16-rounded x, w (exact up
to float sums; bound 1e-9 here, where the emulator sums in double); the
tail's float32 tiled kernel (plain FMAs, but hand-placed shared-memory
layouts) the same way.
The GPU run (bench_cuda's check rows, test_ops) tests the kernels
themselves. Pure Python, ~10 s.
"""
import math, sys, struct, random
random.seed(1)
NAN = float('nan')
def bf16_1(x):
    if x != x or math.isinf(x): return x
    u = struct.unpack('<I', struct.pack('<f', x))[0]
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000
    return struct.unpack('<f', struct.pack('<I', u))[0]
def f32(x): return struct.unpack('<f', struct.pack('<f', x))[0]
def uniform(a, b, n): return [f32(random.uniform(a, b)) for _ in range(n)]
def norm(x): return math.sqrt(sum(t*t for t in x))

def bf16(x):
    if isinstance(x, list): return [bf16_1(t) for t in x]
    return bf16_1(x)

# a register = tuple (lo, hi) of floats (already bf16)
def pack(lo, hi): return (float(bf16(lo)), float(bf16(hi)))

def mma(d, a, b):
    # d[lane][4], a[lane][4] pairs, b[lane][2] pairs ; PTX layouts
    A = [[NAN]*16 for _ in range(16)]; B = [[NAN]*8 for _ in range(16)]   # unfilled: NaN
    for l in range(32):
        g, t = l >> 2, l & 3
        for r in range(4):
            row = g + 8*(r % 2); k = 2*t + 8*(r // 2)
            A[row][k], A[row][k+1] = a[l][r]
        for r in range(2):
            k = 2*t + 8*r
            B[k][g], B[k+1][g] = b[l][r]
    D = [[sum(A[i][kk]*B[kk][j] for kk in range(16)) for j in range(8)] for i in range(16)]
    for l in range(32):
        g, t = l >> 2, l & 3
        for r in range(4):
            row = g + 8*(r // 2); col = 2*t + (r % 2)
            d[l][r] += D[row][col]

def ldmatrix_x2_trans(smem, addr):
    # addr[lane] = flat element index; lanes 0..15 give rows of matrices 0,1
    out = [[None, None] for _ in range(32)]
    for j in range(2):
        M = [[smem[addr[8*j + r] + c] for c in range(8)] for r in range(8)]
        for l in range(32):
            out[l][j] = (M[2*(l & 3)][l >> 2], M[2*(l & 3)+1][l >> 2])
    return out

def ld32(smem, i):
    assert i % 2 == 0
    return (smem[i], smem[i+1])

def flash(q, ldq, k, ldk, v, ldv, B, Lq, Lk, nh, dh, scale, nsplit_force=None, num_sms=132):
    FA_BK = 64
    warps = 1 if Lq <= 16 else 4
    BQ = 16*warps; DHP = (dh + 15)//16*16; KS = DHP + 8
    NT = FA_BK//8; KT = DHP//16; DT = DHP//8
    nqb = (Lq + BQ - 1)//BQ
    nsplit, kchunk = 1, Lk
    base = B*nh*nqb; target = 2*num_sms
    if base < target and Lk >= 2*256:
        want = (target + base - 1)//base; most = Lk//256
        nsplit = min(want, most)
        if nsplit > 1:
            kchunk = (Lk + nsplit - 1)//nsplit
            kchunk = (kchunk + FA_BK - 1)//FA_BK*FA_BK
            nsplit = (Lk + kchunk - 1)//kchunk
        if nsplit < 2: nsplit, kchunk = 1, Lk
    o = [NAN]*(B*Lq*nh*dh)
    part = [NAN]*(B*Lq*nh*nsplit*(dh+2))
    scale2 = scale*1.4426950408889634
    for blk in range(base*nsplit):
        split = blk % nsplit; qb = blk//nsplit % nqb; bh = blk//nsplit//nqb
        h = bh % nh; b = bh//nh
        kbeg = split*kchunk; kend = min(kbeg + kchunk, Lk)
        q0 = qb*BQ; hoff = h*dh
        smem = [NAN]*(2*FA_BK*KS)   # Ks then Vs
        VS0 = FA_BK*KS
        def load4(arr, rowbase, d, valid):
            r = [0.0]*4
            if not valid: return r
            for e in range(4):
                if d + e < dh: r[e] = arr[rowbase + d + e]
            return r
        for idx in range(BQ*(DHP//4)):
            r = idx//(DHP//4); d = idx % (DHP//4)*4; i = q0 + r
            x = load4(q, (b*Lq + (i if i < Lq else 0))*ldq + hoff, d, i < Lq)
            smem[r*KS + d: r*KS + d + 4] = bf16(x)
            assert len(smem) == 2*FA_BK*KS
        qa_all = {}
        for w in range(warps):
            lanes = range(32)
            qa = [[[None]*4 for _ in range(KT)] for _ in lanes]
            for l in lanes:
                g, t = l >> 2, l & 3
                r0 = (w*16 + g)*KS + 2*t; r1 = r0 + 8*KS
                for kt in range(KT):
                    qa[l][kt] = [ld32(smem, r0 + kt*16), ld32(smem, r1 + kt*16),
                                 ld32(smem, r0 + kt*16 + 8), ld32(smem, r1 + kt*16 + 8)]
            qa_all[w] = qa
        acc = {w: [[[0.0]*4 for _ in range(DT)] for _ in range(32)] for w in range(warps)}
        m = {w: [[-math.inf, -math.inf] for _ in range(32)] for w in range(warps)}
        lsum = {w: [[0.0, 0.0] for _ in range(32)] for w in range(warps)}
        k0 = kbeg
        while k0 < kend:
            nk = min(kend - k0, FA_BK)
            for i in range(len(smem)): smem[i] = float('nan')
            for idx in range(FA_BK*(DHP//4)):
                j = idx//(DHP//4); d = idx % (DHP//4)*4; ok = j < nk
                row = b*Lk + k0 + (j if ok else 0)
                kx = load4(k, row*ldk + hoff, d, ok); vx = load4(v, row*ldv + hoff, d, ok)
                smem[j*KS + d: j*KS + d + 4] = bf16(kx)
                smem[VS0 + j*KS + d: VS0 + j*KS + d + 4] = bf16(vx)
                assert len(smem) == 2*FA_BK*KS
            for w in range(warps):
                s = [[[0.0]*4 for _ in range(NT)] for _ in range(32)]
                for nt in range(NT):
                    if nt*8 < nk:
                        for kt in range(KT):
                            a = [qa_all[w][l][kt] for l in range(32)]
                            bb = []
                            for l in range(32):
                                g, t = l >> 2, l & 3
                                kr = (nt*8 + g)*KS + 2*t
                                bb.append([ld32(smem, kr + kt*16), ld32(smem, kr + kt*16 + 8)])
                            dd = [s[l][nt] for l in range(32)]
                            mma(dd, a, bb)
                mx = []
                for l in range(32):
                    t = l & 3
                    mx0 = mx1 = -math.inf
                    for nt in range(NT):
                        for c in range(4):
                            col = nt*8 + 2*t + (c & 1)
                            s[l][nt][c] = s[l][nt][c]*scale2 if col < nk else -math.inf
                        mx0 = max(mx0, s[l][nt][0], s[l][nt][1]); mx1 = max(mx1, s[l][nt][2], s[l][nt][3])
                    mx.append([mx0, mx1])
                for l in range(32):   # quad reduce
                    quad = [mx[(l & ~3) + i] for i in range(4)]
                    mxl = [max(x[0] for x in quad), max(x[1] for x in quad)]
                    m_new = [max(m[w][l][0], mxl[0]), max(m[w][l][1], mxl[1])]
                    c0 = 2**(m[w][l][0] - m_new[0]); c1 = 2**(m[w][l][1] - m_new[1])
                    m[w][l] = m_new
                    ps0 = ps1 = 0.0
                    for nt in range(NT):
                        s[l][nt] = [2**(s[l][nt][0]-m_new[0]), 2**(s[l][nt][1]-m_new[0]),
                                    2**(s[l][nt][2]-m_new[1]), 2**(s[l][nt][3]-m_new[1])]
                        ps0 += s[l][nt][0] + s[l][nt][1]; ps1 += s[l][nt][2] + s[l][nt][3]
                    lsum[w][l] = [lsum[w][l][0]*c0 + ps0, lsum[w][l][1]*c1 + ps1]
                    for dt in range(DT):
                        acc[w][l][dt] = [acc[w][l][dt][0]*c0, acc[w][l][dt][1]*c0,
                                         acc[w][l][dt][2]*c1, acc[w][l][dt][3]*c1]
                for kk in range(FA_BK//16):
                    if kk*16 < nk:
                        pa = [[pack(s[l][2*kk][0], s[l][2*kk][1]), pack(s[l][2*kk][2], s[l][2*kk][3]),
                               pack(s[l][2*kk+1][0], s[l][2*kk+1][1]), pack(s[l][2*kk+1][2], s[l][2*kk+1][3])]
                              for l in range(32)]
                        for dt in range(DT):
                            addr = [VS0 + (kk*16 + (l & 15))*KS + dt*8 for l in range(32)]
                            bb = ldmatrix_x2_trans(smem, addr)
                            dd = [acc[w][l][dt] for l in range(32)]
                            mma(dd, pa, bb)
            k0 += FA_BK
        for w in range(warps):
            for l in range(32):
                g, t = l >> 2, l & 3
                quad = [lsum[w][(l & ~3) + i] for i in range(4)]
                lr2 = [sum(x[0] for x in quad), sum(x[1] for x in quad)]
                for half in range(2):
                    i = q0 + w*16 + g + 8*half
                    if i >= Lq: continue
                    mr = m[w][l][half]; lr = lr2[half]
                    if nsplit > 1:
                        pr = (((b*Lq + i)*nh + h)*nsplit + split)*(dh + 2)
                        if t == 0: part[pr] = mr; part[pr+1] = lr
                        for dt in range(DT):
                            d = dt*8 + 2*t
                            if d < dh: part[pr + 2 + d] = acc[w][l][dt][2*half]
                            if d + 1 < dh: part[pr + 3 + d] = acc[w][l][dt][2*half+1]
                    else:
                        orow = ((b*Lq + i)*nh + h)*dh
                        for dt in range(DT):
                            d = dt*8 + 2*t
                            if d < dh: o[orow + d] = acc[w][l][dt][2*half]/lr
                            if d + 1 < dh: o[orow + d + 1] = acc[w][l][dt][2*half+1]/lr
    if nsplit > 1:
        rows = B*Lq*nh
        for idx in range(rows*dh):
            row = idx//dh; d = idx % dh
            p0 = row*nsplit*(dh+2)
            M = max(part[p0 + sp*(dh+2)] for sp in range(nsplit))
            L = A = 0.0
            for sp in range(nsplit):
                ps = p0 + sp*(dh+2); wgt = 2**(part[ps] - M)
                L += part[ps+1]*wgt; A += part[ps+2+d]*wgt
            o[idx] = A/L
    return o, nsplit

def ref_attn(q, ldq, k, ldk, v, ldv, B, Lq, Lk, nh, dh, scale):
    o = [0.0]*(B*Lq*nh*dh)
    for b in range(B):
        for h in range(nh):
            for i in range(Lq):
                qi = q[(b*Lq+i)*ldq + h*dh:][:dh]
                S = [sum(qi[d]*k[(b*Lk+j)*ldk + h*dh + d] for d in range(dh))*scale for j in range(Lk)]
                mx = max(S); P = [math.exp(x - mx) for x in S]; Z = sum(P)
                for d in range(dh):
                    o[((b*Lq+i)*nh + h)*dh + d] = sum(P[j]*v[(b*Lk+j)*ldv + h*dh + d] for j in range(Lk))/Z
    return o

def test_flash(B, Lq, Lk, nh, dh, packed=False, num_sms=132):
    D = nh*dh
    if packed:
        ld = 3*D
        buf = uniform(-2, 2, B*Lq*ld)
        q = buf; k = buf[D:]; v = buf[2*D:]; ldq = ldk = ldv = ld
        # emulate offsets: pass full buf with offset by slicing -> arrays start at offset
    else:
        q = uniform(-2, 2, B*Lq*D); ldq = D
        k = uniform(-2, 2, B*Lk*D); ldk = D
        v = uniform(-1, 1, B*Lk*D); ldv = D
    sc = 1/math.sqrt(dh)
    o, ns = flash(q, ldq, k, ldk, v, ldv, B, Lq, Lk, nh, dh, sc, num_sms=num_sms)
    r = ref_attn(bf16(q), ldq, bf16(k), ldk, bf16(v), ldv, B, Lq, Lk, nh, dh, sc)
    if any(x != x for x in o): print("NaN in output"); return float('inf')
    err = norm([a - b for a, b in zip(o, r)])/norm(r)
    return err


def gelu(v): return 0.5*v*(1.0 + math.erf(v*0.70710678118654752))
def up_bf16(x, w, b, skip, hyper, n, H, W, CIN, nm, ppb_force=None):
    UT_TM, UT_COUT, UT_N, UT_NM, UT_GRID = 64, 32, 128, 4, 2048
    XS = CIN + 8; WS = UT_N + 8; KT = CIN//16
    HW = H*W; H2, W2 = 2*H, 2*W
    ntiles = (HW + UT_TM - 1)//UT_TM
    ppb = max(1, min(n, (n*ntiles + UT_GRID - 1)//UT_GRID)) if ppb_force is None else ppb_force
    ngroups = (n + ppb - 1)//ppb
    masks = [float('nan')]*(n*nm*H2*W2)
    for blk in range(ntiles*ngroups):
        tile = blk % ntiles; group = blk//ntiles
        m0 = tile*UT_TM; pbeg = group*ppb; pend = min(pbeg + ppb, n)
        Ws = [float('nan')]*(CIN*WS)
        for idx in range(CIN*UT_N//2):
            ci = idx//(UT_N//2); j = idx % (UT_N//2)*2
            Ws[ci*WS + j] = bf16(w[ci*UT_N + j]); Ws[ci*WS + j + 1] = bf16(w[ci*UT_N + j + 1])
        Bs = b[:UT_COUT]
        for p in range(pbeg, pend):
            Xs = [float('nan')]*(UT_TM*XS)
            for idx in range(UT_TM*(CIN//4)):
                r = idx//(CIN//4); c = idx % (CIN//4)*4; m = m0 + r
                v = [0.0]*4
                if m < HW: v = [x[p*HW*CIN + m*CIN + c + e] for e in range(4)]
                Xs[r*XS + c: r*XS + c + 4] = bf16(v)
            Hs = [float('nan')]*(UT_NM*UT_COUT)
            for idx in range(nm*UT_COUT): Hs[idx] = hyper[p*nm*UT_COUT + idx]
            for warp in range(4):
                xa = []
                for l in range(32):
                    g, t = l >> 2, l & 3
                    r0 = (warp*16 + g)*XS + 2*t; r1 = r0 + 8*XS
                    xa.append([[ld32(Xs, r0 + kt*16), ld32(Xs, r1 + kt*16), ld32(Xs, r0 + kt*16 + 8), ld32(Xs, r1 + kt*16 + 8)] for kt in range(KT)])
                acc = [[[0.0]*4 for _ in range(UT_N//8)] for _ in range(32)]
                for nt in range(UT_N//8):
                    for kt in range(KT):
                        bb = ldmatrix_x2_trans(Ws, [(kt*16 + (l & 15))*WS + nt*8 for l in range(32)])
                        mma([acc[l][nt] for l in range(32)], [xa[l][kt] for l in range(32)], bb)
                part = {}
                for l in range(32):
                    g, t = l >> 2, l & 3; dy = t & 1; cpar = t >> 1
                    pr = [[[0.0]*UT_NM for e in range(2)] for half in range(2)]
                    for half in range(2):
                        pix = m0 + warp*16 + g + 8*half
                        if pix >= HW: continue
                        i, jx = pix//W, pix % W
                        for e in range(2):
                            sk = ((2*i + dy)*W2 + 2*jx + e)*UT_COUT if skip is not None else None
                            for nt in range(UT_N//8):
                                c = 2*nt + cpar
                                v = acc[l][nt][2*half + e] + Bs[c]
                                if sk is not None: v += skip[sk + c]
                                gv = gelu(v)
                                for mm in range(UT_NM):
                                    if mm < nm: pr[half][e][mm] += Hs[mm*UT_COUT + c]*gv
                    part[l] = pr
                for l in range(32):
                    g, t = l >> 2, l & 3; dy = t & 1; cpar = t >> 1
                    if cpar: continue
                    o = part[l ^ 2]
                    for half in range(2):
                        pix = m0 + warp*16 + g + 8*half
                        if pix >= HW: continue
                        i, jx = pix//W, pix % W
                        for mm in range(nm):
                            base = ((p*nm + mm)*H2 + 2*i + dy)*W2 + 2*jx
                            masks[base] = part[l][half][0][mm] + o[half][0][mm]
                            masks[base + 1] = part[l][half][1][mm] + o[half][1][mm]
    return masks

def up_f32_tiled(x, w, b, skip, hyper, n, H, W, Cin, nm, ppb=None):
    # upscale2_masks_f32_tiled_kernel: w as (phase, ci, c), warp = phase, lane = pixel
    TF, COUT, GRID = 32, 32, 2048
    HW = H*W; H2, W2 = 2*H, 2*W; XS = Cin + 1
    ntiles = (HW + TF - 1)//TF
    if ppb is None: ppb = max(1, min(n, (n*ntiles + GRID - 1)//GRID))
    ngroups = (n + ppb - 1)//ppb
    masks = [NAN]*(n*nm*H2*W2)
    for blk in range(ntiles*ngroups):
        tile = blk % ntiles; group = blk//ntiles
        m0 = tile*TF; pbeg = group*ppb; pend = min(pbeg + ppb, n)
        Wf = [NAN]*(4*Cin*COUT)
        for idx in range(Cin*COUT*4):
            ci = idx//(COUT*4); c = idx//4 % COUT; q = idx % 4
            Wf[(q*Cin + ci)*COUT + c] = w[idx]
        for p in range(pbeg, pend):
            Xf = [NAN]*(TF*XS)
            for idx in range(TF*Cin):
                r = idx//Cin; ci = idx % Cin
                Xf[r*XS + ci] = x[p*HW*Cin + (m0 + r)*Cin + ci] if m0 + r < HW else 0.0
            for tid in range(4*TF):
                lane, ph = tid & 31, tid >> 5
                pix = m0 + lane
                if pix >= HW: continue
                i, jx = pix//W, pix % W; dy, dx = ph >> 1, ph & 1
                Y, X = 2*i + dy, 2*jx + dx
                acc = [0.0]*COUT
                for ci in range(Cin):
                    xv = Xf[lane*XS + ci]
                    for c4 in range(COUT//4):
                        for e in range(4):
                            acc[4*c4 + e] += xv*Wf[ph*Cin*COUT + (ci*(COUT//4) + c4)*4 + e]
                for c in range(COUT):
                    v = acc[c] + b[c]
                    if skip is not None: v += skip[(Y*W2 + X)*COUT + c]
                    acc[c] = gelu(v)
                for mm in range(nm):
                    masks[(p*nm*H2 + Y)*W2 + X + mm*H2*W2] = sum(hyper[p*nm*COUT + mm*COUT + c]*acc[c] for c in range(COUT))
    return masks

def test_up_f32(n, H, W, Cin, nm, use_skip, ppb=None):
    Cout = 32
    x = uniform(-1, 1, n*H*W*Cin); w = uniform(-.3, .3, Cin*Cout*4); b = uniform(-.5, .5, Cout)
    sk = uniform(-1, 1, 4*H*W*Cout) if use_skip else None; hy = uniform(-1, 1, n*nm*Cout)
    got = up_f32_tiled(x, w, b, sk, hy, n, H, W, Cin, nm, ppb)
    want = up_ref(x, w, b, sk, hy, n, H, W, Cin, Cout, nm)
    if any(v != v for v in got): return float('inf')
    return norm([a - c for a, c in zip(got, want)])/norm(want)

def up_ref(x, w, b, skip, hyper, n, H, W, Cin, Cout, nm):
    H2, W2 = 2*H, 2*W
    out = [0.0]*(n*nm*H2*W2)
    for p in range(n):
        for Y in range(H2):
            for X in range(W2):
                ph = (Y & 1)*2 + (X & 1)
                xr = ((p*H + Y//2)*W + X//2)*Cin
                gs = []
                for c in range(Cout):
                    v = b[c] + sum(x[xr + ci]*w[(ci*Cout + c)*4 + ph] for ci in range(Cin))
                    if skip is not None: v += skip[(Y*W2 + X)*Cout + c]
                    gs.append(gelu(v))
                for m in range(nm):
                    out[((p*nm + m)*H2 + Y)*W2 + X] = sum(hyper[(p*nm + m)*Cout + c]*gs[c] for c in range(Cout))
    return out

def test_up(n, H, W, Cin, nm, use_skip, ppb=None):
    Cout = 32
    x = uniform(-1, 1, n*H*W*Cin); w = uniform(-.3, .3, Cin*Cout*4); b = uniform(-.5, .5, Cout)
    sk = uniform(-1, 1, 4*H*W*Cout) if use_skip else None; hy = uniform(-1, 1, n*nm*Cout)
    got = up_bf16(x, w, b, sk, hy, n, H, W, Cin, nm, ppb)
    want = up_ref(bf16(x), bf16(w), b, sk, hy, n, H, W, Cin, Cout, nm)
    if any(v != v for v in got): print("NaN/unwritten"); return float('inf')
    err = norm([a - c for a, c in zip(got, want)])/norm(want)
    return err

def main():
    passed = failed = 0
    def ok(name, err, bound):
        nonlocal passed, failed
        good = err <= bound
        print(f"{'ok' if good else 'not ok'} - {name}: normalized error {err:.3g} (bound {bound:g})", flush=True)
        if good: passed += 1
        else: failed += 1
    # tails of Lq, Lk and dh; 1 and 4 warps; packed qkv; the key split
    for args, kw in [((1, 20, 70, 1, 12), {}), ((1, 7, 100, 2, 16), {}),
                     ((1, 17, 17, 1, 24), {"packed": True}), ((1, 5, 600, 1, 16), {"num_sms": 1}),
                     ((1, 20, 600, 1, 16), {"num_sms": 1}), ((1, 8, 30, 1, 72), {}),
                     ((2, 37, 75, 2, 12), {}), ((1, 64, 64, 1, 96), {"packed": True}),
                     ((1, 33, 130, 1, 128), {}), ((2, 70, 9, 2, 56), {})]:
        ok("flash_attn B=%d Lq=%d Lk=%d nh=%d dh=%d %s" % (args + (kw,)), test_flash(*args, **kw), 5e-3)
    for args, kw in [((2, 9, 11, 32, 4, True), {}), ((3, 5, 3, 16, 3, False), {"ppb": 2}),
                     ((1, 8, 9, 64, 4, True), {})]:
        ok("upscale2_masks n=%d H=%d W=%d Cin=%d nm=%d skip=%s %s" % (args + (kw,)), test_up(*args, **kw), 1e-9)
    for args, kw in [((2, 5, 9, 24, 5, True), {}), ((3, 6, 7, 16, 2, False), {"ppb": 2})]:
        ok("upscale2_masks f32 tiled n=%d H=%d W=%d Cin=%d nm=%d skip=%s %s" % (args + (kw,)),
           test_up_f32(*args, **kw), 1e-9)
    print(f"RESULT {passed} {failed}")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
