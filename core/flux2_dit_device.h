/* flux2_dit_device.h — the FLUX.2 transformer's forward on a backend
 * device (internal; backend.h).
 *
 * The blocks' linears (binary/ternary packs or dense), the token
 * projections and the final projection are made resident on the device
 * once per model; every block then runs there with the whole activation
 * state in device memory.  The conditioning (timestep MLP and the shared
 * modulation vectors, one row each) and the RoPE tables are computed on the
 * CPU exactly as bn_flux2_dit_forward does and uploaded once per forward,
 * as are the tokens; only the velocities come back.
 */
#ifndef BN_FLUX2_DIT_DEVICE_H
#define BN_FLUX2_DIT_DEVICE_H

#include "backend.h"
#include "flux2_dit.h"

typedef struct BnFlux2DitDevice BnFlux2DitDevice;

/* Uploads `dit`'s weights to `be` (which must outlive the result).  Fails
 * with BONSAI_ERROR_BACKEND (head_dim not 32, 64 or 128, a device error) or
 * OUT_OF_MEMORY naming the bytes wanted; nothing stays allocated then.
 * Logs the device memory the weights take. */
BnFlux2DitDevice *bn_flux2_dit_device_new (const BnFlux2Dit *dit,
                                           BnBackend *be, GError **error);
void bn_flux2_dit_device_free (BnFlux2DitDevice *dev);

/* Bytes of device memory the resident weights take. */
size_t bn_flux2_dit_device_weight_bytes (const BnFlux2DitDevice *dev);

/* bn_flux2_dit_forward on the device: the same inputs, outputs and errors.
 * in->act is not used (activations are rounded to bf16 for the tensor
 * cores); in->chunk_rows, when set, caps the tokens per chunk (default
 * 8192, so that every image up to 2048² is one chunk).  Forwards on one
 * `dev` are serialised. */
gboolean bn_flux2_dit_device_forward (const BnFlux2Dit *dit,
                                      BnFlux2DitDevice *dev,
                                      BnThreadPool *pool,
                                      const BnFlux2Input *in, float *out,
                                      GError **error);

#endif
