/* bonsai.h — the public API of libbonsai, the engine behind Bonsai Image.
 *
 * This is the only header a host (CLI, GIMP plug-in, Python extension)
 * includes.  Every function that can fail returns FALSE or NULL and sets a
 * GError in the BONSAI_ERROR domain; the caller owns the error.  Ownership of
 * every returned object is stated next to the function.
 */
#ifndef BONSAI_H
#define BONSAI_H

#include <glib.h>

G_BEGIN_DECLS

#if defined(BONSAI_COMPILATION) || defined(BONSAI_STATIC)
#define BONSAI_API __attribute__ ((visibility ("default")))
#else
#define BONSAI_API
#endif

#define BONSAI_VERSION_STRING "0.1.0"

/* ---- Errors ------------------------------------------------------------ */

#define BONSAI_ERROR (bonsai_error_quark ())
BONSAI_API GQuark bonsai_error_quark (void);

typedef enum {
  BONSAI_ERROR_INVALID_INPUT, /* a request or argument the engine cannot accept */
  BONSAI_ERROR_FORMAT,        /* a file that is damaged or not what it claims  */
  BONSAI_ERROR_NOT_FOUND,     /* a file, tensor or model that does not exist   */
  BONSAI_ERROR_IO,            /* the operating system refused a read or write  */
  BONSAI_ERROR_NETWORK,       /* a download failed                             */
  BONSAI_ERROR_CHECKSUM,      /* a file's sha256 differs from the manifest     */
  BONSAI_ERROR_CANCELLED,     /* the caller cancelled the work                 */
  BONSAI_ERROR_OUT_OF_MEMORY, /* an allocation failed                          */
  BONSAI_ERROR_BACKEND,       /* a compute backend failed or is unavailable    */
} BonsaiError;

/* ---- Logging ----------------------------------------------------------- */

/* The engine logs through GLib (log domain "bonsai"): warnings always,
 * informational and debug lines when enabled here or with
 * G_MESSAGES_DEBUG=bonsai. */
BONSAI_API void bonsai_log_set_verbose (gboolean verbose);

/* ---- Version and CPU --------------------------------------------------- */

/* Static strings; do not free. */
BONSAI_API const char *bonsai_version (void);
/* The instruction set the CPU kernels chose for this machine:
 * "avx512", "avx2" or "scalar".  BONSAI_CPU_ISA=scalar|avx2|avx512 caps it. */
BONSAI_API const char *bonsai_cpu_isa (void);

G_END_DECLS

#endif /* BONSAI_H */
