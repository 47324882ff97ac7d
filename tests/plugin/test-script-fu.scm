; test-script-fu.scm — plug-in-script-fu-eval script run by
; run-plugin-test.sh: calls both procedures with Script-Fu's named arguments
; (GIMP 3.0), as a user script would: locally (@T2I@ and @EDIT@ are the tiny
; model folders; no `server`, as scripts written before it) and on the
; `nextstep serve` at @SERVER@. A failed check raises an error, which fails
; the batch run.
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
                                   #:model "@T2I@" #:backend "cpu"))
  (check (= (vector-length (cadr generated)) 1) "generate: want one new layer")
  (check (= (car (gimp-drawable-get-width (vector-ref (cadr generated) 0))) 32)
         "generate: the new layer is not 32 pixels wide")
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 16 8 32 24)
  (set! edited
        (plug-in-nextstep-edit #:run-mode RUN-NONINTERACTIVE #:image img
                               #:drawables (vector layer) #:instruction "make it red"
                               #:steps 2 #:seed 5 #:model "@EDIT@" #:backend "cpu"
                               #:limit-to-selection TRUE))
  (check (= (vector-length (cadr edited)) 1) "edit: want one new layer")
  (check (= (car (gimp-drawable-get-height (vector-ref (cadr edited) 0))) 24)
         "edit: the new layer is not the selection's height")
  (set! generated
        (plug-in-nextstep-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                   #:drawables (vector layer) #:prompt "a green cube"
                                   #:width 32 #:height 32 #:steps 2 #:seed 5
                                   #:backend "remote" #:server "@SERVER@"))
  (check (= (car (gimp-drawable-get-width (vector-ref (cadr generated) 0))) 32)
         "remote generate: the new layer is not 32 pixels wide")
  (set! edited
        (plug-in-nextstep-edit #:run-mode RUN-NONINTERACTIVE #:image img
                               #:drawables (vector layer) #:instruction "make it red"
                               #:steps 2 #:seed 5 #:backend "remote" #:server "@SERVER@"))
  (check (= (vector-length (cadr edited)) 1) "remote edit: want one new layer")
  (check (= (vector-length (car (gimp-image-get-layers img))) 5)
         "want five layers in the image")
  (gimp-image-delete img)
  (gimp-message "NEXTSTEP-TEST-OK"))
