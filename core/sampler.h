/* sampler.h — the FLUX.2 [klein] sigma schedule and the flow-matching
 * Euler step (internal).
 *
 * The schedule replicates diffusers (Flux2KleinPipeline +
 * FlowMatchEulerDiscreteScheduler with use_dynamic_shifting and
 * time_shift_type "exponential") operation by operation, so it matches
 * diffusers' float32 sigmas bit for bit:
 *   mu      = compute_empirical_mu(N, S) in double (bn_sampler_mu);
 *   t_i     = (float) np.linspace(1.0, 1/S, S)[i] — in double, i·step + 1
 *             with step = (1/S − 1)/(S − 1), the last one exactly 1/S;
 *   sigma_i = E / (E + (1/t_i − 1)) in float arithmetic, E = (float) e^mu;
 *   sigma_S = 0.
 * The transformer is called with diffusers' timestep/1000 for sigma_i
 * (bn_sampler_timestep) and multiplies it by 1000 itself.
 */
#ifndef BN_SAMPLER_H
#define BN_SAMPLER_H

#include <glib.h>
#include <stdint.h>

/* The empirical shift of klein for n_tokens generated-image tokens
 * ((H/16)·(W/16), reference tokens excluded) and `steps` steps:
 *   a1 = 8.73809524e-05, b1 = 1.89833333, a2 = 0.00016927, b2 = 0.45666666
 *   n_tokens > 4300: mu = a2·N + b2
 *   else: m200 = a2·N + b2, m10 = a1·N + b1, a = (m200 − m10)/190,
 *         b = m200 − 200·a, mu = a·S + b. */
double bn_sampler_mu (int64_t n_tokens, int steps);

/* Writes the steps + 1 sigmas (1 … 0, see above) to sigmas[].  Errors
 * (INVALID_INPUT): n_tokens < 1, steps < 1 or steps > BONSAI_MAX_STEPS. */
gboolean bn_sampler_sigmas (int64_t n_tokens, int steps, float *sigmas,
                            GError **error);

/* The value diffusers passes the transformer at sigma:
 * (float) ((float) (sigma · 1000) / 1000).  It can differ from sigma in the
 * last bit, but its product with 1000 is diffusers' timestep exactly. */
float bn_sampler_timestep (float sigma);

/* x[i] += (sigma_next − sigma) · v[i] for i < n, in float as diffusers
 * does (the difference rounded once, then a product and a sum). */
void bn_sampler_euler_step (float *x, const float *v, int64_t n, float sigma,
                            float sigma_next);

#endif
