package sdk

var (
	current   uint32
	callbacks = map[uint32]httpCallback{}
)

type httpCallback struct {
	context uint32
	fn      func(numHeaders, bodySize, numTrailers int)
}

// ContextID returns the id of the context whose callback is running.
func ContextID() uint32 { return current }
