// BokehJS is in #psnmf-bokehjs, gzip-compressed and base64-encoded (1.65 MB of code in
// 0.6 MB): decompress it with the browser's DecompressionStream, run it, then run Bokeh's
// embedding script and its document, held in <template id="psnmf-bokeh-doc"> until then
// (scripts inside a template do not run). Nothing is fetched.
(async function () {
  const packed = document.getElementById("psnmf-bokehjs").textContent.trim();
  const bin = atob(packed);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    bytes[i] = bin.charCodeAt(i);
  }
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const code = await new Response(stream).text();
  const run = function (text, from) {
    const s = document.createElement("script");
    if (from) {
      for (const a of from.attributes) {
        s.setAttribute(a.name, a.value);
      }
    }
    s.textContent = text;
    document.body.appendChild(s);
  };
  run(code, null);
  const held = document.getElementById("psnmf-bokeh-doc").content.querySelectorAll("script");
  for (const s of held) {
    run(s.textContent, s);
  }
})();
