// AudioWorklet processor: mono float input at the context's rate -> 16 kHz PCM16 chunks.
// Downsampling averages the input samples falling into each output interval (a box filter
// against aliasing) and carries its position across blocks, so chunk boundaries are seamless.
// Each ~100 ms of output is posted to the page as an ArrayBuffer of little-endian int16.
class PcmWorklet extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.outRate = (options.processorOptions && options.processorOptions.outRate) || 16000;
    this.step = sampleRate / this.outRate;      // input samples per output sample
    this.pos = 0;                               // input samples into the current output interval
    this.acc = 0; this.n = 0;                   // running sum and count for the current output sample
    this.chunk = new Int16Array(this.outRate / 10);
    this.fill = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      this.acc += ch[i]; this.n += 1; this.pos += 1;
      if (this.pos >= this.step) {
        this.pos -= this.step;
        const v = Math.max(-1, Math.min(1, this.acc / this.n));
        this.acc = 0; this.n = 0;
        this.chunk[this.fill++] = v < 0 ? v * 32768 : v * 32767;
        if (this.fill === this.chunk.length) {
          this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
          this.chunk = new Int16Array(this.outRate / 10);
          this.fill = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("pcm-worklet", PcmWorklet);
