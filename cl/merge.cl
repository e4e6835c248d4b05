/*
 * merge.cl — combine partial attention results over disjoint key sets by their lse.
 *
 * For each row (b, h, i) with parts p:
 *   lse = log sum_p exp(lse_p),   out = sum_p exp(lse_p - lse) out_p.
 * A part with lse_p = -inf contributes nothing (its out_p is never read); when every part is
 * -inf the row gets out = 0 and lse = -inf. NaN in any lse_p, or in a contributing out_p, gives
 * NaN.
 *
 * Parts come either as n_parts views in one buffer, part p at p * part_stride elements from the
 * first (split-KV partials), or one per launch, folded into a running f32 state (parts in
 * separate buffers, clattn_attention_merge): MERGE_READ_STATE combines the state with the parts,
 * MERGE_WRITE_FINAL writes out (and lse with MERGE_WRITE_LSE), else the state is written. The
 * state is dense: values [B, Hq, Sq, Dv], then lse [B, Hq, Sq] from element state_lse_at.
 *
 * Arguments: the buffers, then clattn_merge_params (launch.h).
 * Launch: global (Sq, Hq, B), any local size; one work-item per row.
 *
 * Tunables: QKV_TYPE is the storage type of the parts' out_p, OUT_TYPE that of out
 * (common.cl); parts' lse and the state are f32.
 */

__kernel void merge_partials(__global const qkv_t *parts, __global const float *part_lse,
                             __global float *state, __global out_t *out, __global float *lse,
                             const clattn_merge_params params)
{
    const long i = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    const long row = (b * get_global_size(1) + h) * get_global_size(0) + i;
    const int flags = params.flags, n_parts = params.n_parts, head_dim_v = params.head_dim_v;
    const long p_part = params.part_stride, pl_part = params.lse_part_stride;
    parts += view_row(&params.parts, b, h, i);
    part_lse += view_row(&params.part_lse, b, h, i);
    const int read_state = (flags & MERGE_READ_STATE) != 0;
    __global float *state_lse = state + params.state_lse_at;
    const float state_l = read_state ? state_lse[row] : -INFINITY;

    /* The largest lse; any NaN poisons the row. */
    float top = state_l;
    int nan_seen = isnan(state_l);
    for (int p = 0; p < n_parts; p++) {
        const float lp = part_lse[p * pl_part];
        nan_seen |= isnan(lp);
        top = fmax(top, lp);
    }
    const int empty = !nan_seen && top == -INFINITY;
    float total = 0.0f;
    if (!empty && !nan_seen) {
        total = state_l == -INFINITY ? 0.0f : exp(state_l - top);
        for (int p = 0; p < n_parts; p++) {
            const float lp = part_lse[p * pl_part];
            total += lp == -INFINITY ? 0.0f : exp(lp - top);
        }
    }
    const float merged_lse = nan_seen ? NAN : empty ? -INFINITY : top + log(total);

    const int final = (flags & MERGE_WRITE_FINAL) != 0;
    __global out_t *orow = out + view_row(&params.out, b, h, i);
    for (int d = 0; d < head_dim_v; d++) {
        float o = 0.0f;
        if (nan_seen) {
            o = NAN;
        } else if (!empty) {
            if (state_l != -INFINITY)
                o = exp(state_l - merged_lse) * state[row * head_dim_v + d];
            for (int p = 0; p < n_parts; p++) {
                const float lp = part_lse[p * pl_part];
                if (lp != -INFINITY)
                    o += exp(lp - merged_lse) * LOAD_QKV(parts, p * p_part + d);
            }
        }
        if (final)
            STORE_OUT(orow, d, o);
        else
            state[row * head_dim_v + d] = o;
    }
    if (!final)
        state_lse[row] = merged_lse;
    else if (flags & MERGE_WRITE_LSE)
        lse[view_row(&params.lse, b, h, i)] = merged_lse;
}
