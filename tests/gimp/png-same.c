/* png-same A.png B.png — exit 0 when both PNGs hold the same pixels (as
 * RGBA8: an RGB file equals an RGBA one whose alpha is 255), else 1 with
 * the first difference; 2 when a file cannot be read. */
#include "bonsai/bonsai.h"

#include <stdio.h>

int
main (int argc, char **argv)
{
  if (argc != 3)
    {
      fprintf (stderr, "usage: png-same A.png B.png\n");
      return 2;
    }
  GError *error = NULL;
  BonsaiImage *a = bonsai_image_load_png (argv[1], &error);
  BonsaiImage *b = a ? bonsai_image_load_png (argv[2], &error) : NULL;
  if (!b)
    {
      fprintf (stderr, "png-same: %s\n", error->message);
      g_error_free (error);
      bonsai_image_free (a);
      return 2;
    }
  int status = 0;
  if (a->width != b->width || a->height != b->height)
    {
      printf ("sizes differ: %d×%d and %d×%d\n", a->width, a->height, b->width, b->height);
      status = 1;
    }
  for (int y = 0; status == 0 && y < a->height; y++)
    for (int x = 0; status == 0 && x < a->width; x++)
      {
        const guint8 *p = (const guint8 *) a->pixels + y * a->stride + 4 * x;
        const guint8 *q = (const guint8 *) b->pixels + y * b->stride + 4 * x;
        for (int c = 0; c < 4; c++)
          if (p[c] != q[c])
            {
              printf ("pixel (%d, %d) differs: %u %u %u %u and %u %u %u %u\n", x, y, p[0], p[1],
                      p[2], p[3], q[0], q[1], q[2], q[3]);
              status = 1;
              break;
            }
      }
  bonsai_image_free (a);
  bonsai_image_free (b);
  return status;
}
