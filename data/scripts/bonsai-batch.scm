; bonsai-batch.scm — batch generation with Bonsai Image, for Script-Fu in
; GIMP 2.10 and GIMP 3.0 (it asks GIMP its version where the two differ).
;
; (script-fu-bonsai-batch PROMPTS-FILE OUTPUT-FOLDER WIDTH HEIGHT STEPS
;                         FIRST-SEED MODEL)
; reads PROMPTS-FILE, one prompt a line (blank lines and lines starting with
; # are skipped), generates each with plug-in-bonsai-generate and saves it
; in OUTPUT-FOLDER as bonsai-001-SEED.png, bonsai-002-SEED.png, …  Seeds
; count up from FIRST-SEED; -1 draws a random seed for every picture (the
; file name tells it).  Headless, as the README shows:
;   gimp-console-2.10 -i -b '(script-fu-bonsai-batch "prompts.txt" "out" 1024 1024 4 1 "ternary")' -b '(gimp-quit 0)'
;   gimp-console-3.0 -i --quit -b '(script-fu-bonsai-batch "prompts.txt" "out" 1024 1024 4 1 "ternary")'
; Any failure stops the batch with an error naming the prompt; the
; pictures saved before it stay.

(define (bonsai-gimp3?)
  (>= (string->number (substring (car (gimp-version)) 0 1)) 3))

; Dialogs hand numbers over as reals; the plug-in takes integers.
(define (bonsai-int x)
  (inexact->exact (round x)))

(define (bonsai-trim s)
  (let loop ((start 0) (end (string-length s)))
    (cond ((and (< start end) (char-whitespace? (string-ref s start)))
           (loop (+ start 1) end))
          ((and (< start end) (char-whitespace? (string-ref s (- end 1))))
           (loop start (- end 1)))
          (else (substring s start end)))))

; The prompts of a file: its lines, trimmed, without blank and # lines.
(define (bonsai-read-prompts path)
  (let ((port (open-input-file path)))
    (if (not port)
        (error (string-append "Bonsai Image: cannot read the prompts file " path)))
    (let loop ((chars '()) (prompts '()))
      (let* ((c (read-char port))
             (end (or (eof-object? c) (char=? c #\newline)))
             (line (if end (bonsai-trim (list->string (reverse chars))) ""))
             (keep (and end (> (string-length line) 0)
                        (not (char=? (string-ref line 0) #\#))))
             (prompts (if keep (cons line prompts) prompts)))
        (cond ((eof-object? c) (close-input-port port) (reverse prompts))
              (end (loop '() prompts))
              (else (loop (cons c chars) prompts)))))))

(define (bonsai-pad3 n)
  (let ((s (number->string n)))
    (cond ((< n 10) (string-append "00" s))
          ((< n 100) (string-append "0" s))
          (else s))))

; GIMP 3.0 takes "no image" only by leaving the argument out, which needs
; its named arguments; GIMP 2.10's reader rejects the #: syntax, so the call
; is read from a string, and evaluated where the arguments are bound.
(define bonsai-generate-call-3
  "(plug-in-bonsai-generate #:run-mode RUN-NONINTERACTIVE #:prompt prompt
     #:width width #:height height #:steps steps #:seed seed #:model model #:output 0)")

; Generates one picture into a new image and saves it as `path-base`-SEED.png;
; returns the file's name.
(define (bonsai-generate-one prompt width height steps seed model path-base)
  (let* ((result (if (bonsai-gimp3?)
                     (eval (read (open-input-string bonsai-generate-call-3)))
                     (plug-in-bonsai-generate RUN-NONINTERACTIVE -1 -1 prompt
                                              width height steps seed model 0)))
         (image (car result))
         (layer (cadr result))
         (path (string-append path-base "-" (number->string (caddr result)) ".png")))
    (if (bonsai-gimp3?)
        (gimp-file-save RUN-NONINTERACTIVE image path -1)
        (gimp-file-save RUN-NONINTERACTIVE image layer path path))
    (gimp-image-delete image)
    path))

(define (script-fu-bonsai-batch prompts-file output-folder width height steps
                                first-seed model)
  (let ((prompts (bonsai-read-prompts prompts-file))
        (width (bonsai-int width))
        (height (bonsai-int height))
        (steps (bonsai-int steps))
        (first-seed (bonsai-int first-seed)))
    (if (null? prompts)
        (error (string-append "Bonsai Image: no prompts in " prompts-file)))
    (let loop ((prompts prompts) (i 1))
      (if (not (null? prompts))
          (let ((seed (if (< first-seed 0) -1 (+ first-seed i -1)))
                (base (string-append output-folder DIR-SEPARATOR "bonsai-" (bonsai-pad3 i))))
            (bonsai-generate-one (car prompts) width height steps seed model base)
            (loop (cdr prompts) (+ i 1)))
          (gimp-message (string-append "Bonsai Image: " (number->string (- i 1))
                                       " pictures in " output-folder))))))

(script-fu-register "script-fu-bonsai-batch"
  "Bonsai Image _Batch…"
  "Generates one picture for each line of a prompts file into a folder of PNG files"
  "Bonsai Image authors"
  "Bonsai Image authors"
  "2026"
  ""
  SF-FILENAME   "Prompts file (one a line)" ""
  SF-DIRNAME    "Output folder" ""
  SF-ADJUSTMENT "Width" '(1024 16 4096 16 64 0 1)
  SF-ADJUSTMENT "Height" '(1024 16 4096 16 64 0 1)
  SF-ADJUSTMENT "Steps" '(4 1 1000 1 4 0 1)
  SF-ADJUSTMENT "First seed (-1: random)" '(1 -1 2147483647 1 100 0 1)
  SF-STRING     "Model" "ternary")

(script-fu-menu-register "script-fu-bonsai-batch" "<Image>/File/Create")
