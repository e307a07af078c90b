/* sampler.c — klein's sigma schedule and the Euler step; the arithmetic
 * mirrors diffusers', see sampler.h.  Float expressions stay float: the
 * project builds in ISO C mode (no FMA contraction) and x86-64 evaluates
 * float in float. */
#include "sampler.h"

#include "bonsai/bonsai.h"

#include <math.h>

double
bn_sampler_mu (int64_t n_tokens, int steps)
{
  const double a1 = 8.73809524e-05, b1 = 1.89833333;
  const double a2 = 0.00016927, b2 = 0.45666666;
  double n = (double) n_tokens;
  if (n_tokens > 4300)
    return a2 * n + b2;
  double m200 = a2 * n + b2;
  double m10 = a1 * n + b1;
  double a = (m200 - m10) / 190.0;
  double b = m200 - 200.0 * a;
  return a * steps + b;
}

gboolean
bn_sampler_sigmas (int64_t n_tokens, int steps, float *sigmas, GError **error)
{
  if (n_tokens < 1 || steps < 1 || steps > BONSAI_MAX_STEPS)
    {
      g_set_error (error, BONSAI_ERROR, BONSAI_ERROR_INVALID_INPUT,
                   "sigma schedule: need 1 <= steps <= %d and at least one "
                   "image token, got %d steps for %" G_GINT64_FORMAT " tokens",
                   BONSAI_MAX_STEPS, steps, n_tokens);
      return FALSE;
    }
  float e = (float) exp (bn_sampler_mu (n_tokens, steps));
  double last = 1.0 / steps;
  double step = steps > 1 ? (last - 1.0) / (steps - 1) : 0.0;
  for (int i = 0; i < steps; i++)
    {
      /* numpy's linspace: i·step + start, the end point set exactly. */
      float t = (float) (i == steps - 1 ? last : (double) i * step + 1.0);
      sigmas[i] = e / (e + (1.0f / t - 1.0f));
    }
  sigmas[steps] = 0.0f;
  return TRUE;
}

float
bn_sampler_timestep (float sigma)
{
  float timestep = sigma * 1000.0f;
  return timestep / 1000.0f;
}

void
bn_sampler_euler_step (float *x, const float *v, int64_t n, float sigma,
                       float sigma_next)
{
  float dt = sigma_next - sigma;
  for (int64_t i = 0; i < n; i++)
    x[i] = x[i] + dt * v[i];
}
