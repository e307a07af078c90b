/* cpu.c — which SIMD paths this CPU can run (CPUID + XGETBV). */
#include "kernels.h"

#include <cpuid.h>
#include <string.h>

static gboolean
os_saves (guint64 mask)
{
  guint32 lo, hi;
  __asm__ volatile ("xgetbv" : "=a" (lo), "=d" (hi) : "c" (0));
  return ((((guint64) hi << 32) | lo) & mask) == mask;
}

static BnIsa
detect (void)
{
  unsigned a, b, c, d;
  if (!__get_cpuid (1, &a, &b, &c, &d))
    return BN_ISA_SCALAR;
  gboolean osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !os_saves (0x6)) /* XMM and YMM state */
    return BN_ISA_SCALAR;
  if (!__get_cpuid_count (7, 0, &a, &b, &c, &d))
    return BN_ISA_SCALAR;
  gboolean avx2 = (b >> 5) & 1;
  gboolean avx512 = ((b >> 16) & 1) /* F */ && ((b >> 17) & 1) /* DQ */
                    && ((b >> 30) & 1) /* BW */ && ((b >> 31) & 1) /* VL */;
  if (!(avx2 && fma && f16c))
    return BN_ISA_SCALAR;
  if (avx512 && os_saves (0xe6)) /* + opmask and ZMM state */
    return BN_ISA_AVX512;
  return BN_ISA_AVX2;
}

/* AVX-512 extensions: bit 0 VNNI (CPUID 7.0 ECX 11), bit 1 BF16
 * (CPUID 7.1 EAX 5), bit 2 VBMI (CPUID 7.0 ECX 1). */
static unsigned
detect_extensions (void)
{
  unsigned a, b, c, d, found = 0;
  if (detect () != BN_ISA_AVX512)
    return 0;
  if (!__get_cpuid_count (7, 0, &a, &b, &c, &d))
    return 0;
  if ((c >> 11) & 1)
    found |= 1;
  if ((c >> 1) & 1)
    found |= 4;
  /* Leaf 7 sub-leaf 1 exists when sub-leaf 0's EAX says so. */
  if (a >= 1 && __get_cpuid_count (7, 1, &a, &b, &c, &d) && ((a >> 5) & 1))
    found |= 2;
  return found;
}

static unsigned
extensions (void)
{
  static gsize once = 0;
  static unsigned ext;
  if (g_once_init_enter (&once))
    {
      ext = detect_extensions ();
      g_once_init_leave (&once, 1);
    }
  return ext;
}

gboolean
bn_cpu_has_vnni (void)
{
  return (extensions () & 1) != 0;
}

gboolean
bn_cpu_has_bf16 (void)
{
  return (extensions () & 2) != 0;
}

gboolean
bn_cpu_has_vbmi (void)
{
  return (extensions () & 4) != 0;
}

static BnIsa
hardware_isa (void)
{
  /* Computed once; the CPU does not change under a running process. */
  static gsize once = 0;
  static BnIsa isa;
  if (g_once_init_enter (&once))
    {
      isa = detect ();
      g_once_init_leave (&once, 1);
    }
  return isa;
}

gboolean
bn_cpu_supports (BnIsa isa)
{
  return isa <= hardware_isa ();
}

BnIsa
bn_cpu_isa (void)
{
  BnIsa isa = hardware_isa ();
  const char *cap = g_getenv ("BONSAI_CPU_ISA");
  if (cap)
    for (int i = 0; i < BN_ISA_COUNT; i++)
      if (!strcmp (cap, bn_isa_name ((BnIsa) i)) && (BnIsa) i < isa)
        isa = (BnIsa) i;
  return isa;
}

const char *
bn_isa_name (BnIsa isa)
{
  static const char *const names[BN_ISA_COUNT] = { "scalar", "avx2", "avx512" };
  return (unsigned) isa < BN_ISA_COUNT ? names[isa] : "invalid";
}
