; test-script-fu-remote.scm — plug-in-script-fu-eval script run by
; run-plugin-test.sh with a `nextstep serve` at @SERVER@: both procedures
; through the new trailing `server` argument, as a user script would.
(define (check condition message)
  (if (not condition) (error message)))

(let* ((img (car (gimp-image-new 64 64 RGB)))
       (layer (car (gimp-layer-new img "source" 64 64 RGBA-IMAGE 100 LAYER-MODE-NORMAL)))
       (generated #f)
       (edited #f))
  (gimp-image-insert-layer img layer 0 0)
  (gimp-drawable-fill layer FILL-WHITE)
  (set! generated
        (plug-in-nextstep-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                   #:drawables (vector layer) #:prompt "a green cube"
                                   #:width 32 #:height 32 #:steps 2 #:seed 5
                                   #:backend "remote" #:server "@SERVER@"))
  (check (= (vector-length (cadr generated)) 1) "remote generate: want one new layer")
  (check (= (car (gimp-drawable-get-width (vector-ref (cadr generated) 0))) 32)
         "remote generate: the new layer is not 32 pixels wide")
  (set! edited
        (plug-in-nextstep-edit #:run-mode RUN-NONINTERACTIVE #:image img
                               #:drawables (vector layer) #:instruction "make it red"
                               #:steps 2 #:seed 5 #:backend "remote" #:server "@SERVER@"))
  (check (= (vector-length (cadr edited)) 1) "remote edit: want one new layer")
  (check (= (vector-length (car (gimp-image-get-layers img))) 3)
         "want three layers in the image")
  (gimp-image-delete img)
  (gimp-message "NEXTSTEP-TEST-OK"))
