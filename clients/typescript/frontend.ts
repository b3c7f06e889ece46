// A small frontend module, as a developer would write one against Pounce: types generated
// from /openapi.json by openapi-typescript (schema.d.ts, made by tests/test_clients.py),
// calls made with openapi-fetch. It must compile under `tsc --strict` and run under node:
//   node build/frontend.js http://127.0.0.1:8000 <base64 of a JPEG>
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type Schemas = components["schemas"];
type Answer =
  | Schemas["Result"]
  | Schemas["MultiLabelResult"]
  | Schemas["RegressionResult"]
  | Schemas["KeypointsResult"]
  | Schemas["SegmentationResult"];
type Model = Schemas["ModelInfo"];
type ErrorCode = components["schemas"]["ErrorCode"];

declare const process: { argv: string[]; exit(code: number): never }; // no @types/node needed

// What a frontend shows first, whichever kind of model answers (/api/model says which).
export function headline(answer: Answer): string {
  if (!("kind" in answer)) return answer.label; // single-label
  switch (answer.kind) {
    case "multi-label":
      return answer.labels.join(", ") || "(no label passes)";
    case "regression":
      return answer.values.join(", ");
    case "keypoints":
      return `${answer.points.length} points`;
    case "segmentation":
      return Object.keys(answer.areas).join(", ");
  }
}

// What /api/model says of the model, in a few words: each kind says something of its own.
export function described(model: Model): string {
  switch (model.kind) {
    case "single-label":
    case "multi-label":
      return `${model.kind}, ${model.class_count} classes`;
    case "regression":
      return `regression, ${model.count} values${model.names ? ` (${model.names.join(", ")})` : ""}`;
    case "keypoints":
      return `keypoints, ${model.count} points`;
    case "segmentation":
      return `segmentation, ${model.classes.length} classes`;
  }
}

async function main(): Promise<void> {
  const [baseUrl, photo] = process.argv.slice(2);
  if (!baseUrl || !photo) throw new Error("usage: frontend.js BASE_URL BASE64_JPEG");
  const api = createClient<paths>({ baseUrl });
  const seen: Record<string, unknown> = {};

  const model = await api.GET("/api/model");
  if (!model.data) throw new Error("no model");
  seen.kind = model.data.kind;
  seen.model = described(model.data);
  seen.refused = model.data.explanation?.refused ?? null; // why explain=true can't work, if so

  const json = await api.POST("/api/predict", { body: { image: photo }, params: { query: { top_k: 2 } } });
  if (!json.data) throw new Error(`predict failed: ${json.error?.error.code}`);
  seen.label = headline(json.data);
  seen.predictions = "predictions" in json.data ? json.data.predictions.length : 0;

  const bytes = Uint8Array.from(atob(photo), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], { type: "image/jpeg" });
  const upload = await api.POST("/api/predict", {
    body: {}, // multipart: the form is built below, from a Blob (the schema's `file` is a string)
    bodySerializer: () => {
      const form = new FormData();
      form.append("file", blob, "photo.jpg");
      return form;
    },
  });
  seen.upload = upload.data ? headline(upload.data) : upload.error?.error.code;

  const batch = await api.POST("/api/predict/batch", {
    body: { items: [{ image: photo }, { image: "bm90IGFuIGltYWdl" }] },
  });
  seen.batch = batch.data?.results.map((r) => ("error" in r ? r.error.code : headline(r)));

  // An option out of bounds: a classifier's top_k; every other kind ignores it, so its
  // error is an image it can't read.
  const classifier = "class_count" in model.data;
  const bad = await api.POST("/api/predict", {
    body: { image: classifier ? photo : "bm90IGFuIGltYWdl" },
    params: { query: { top_k: 0 } },
  });
  const code: ErrorCode | undefined = bad.error?.error.code;
  seen.error = { status: bad.response.status, code, requestId: bad.response.headers.get("X-Request-ID") };

  // Where the network looked (explain=true): the map's target and size, or the code of a
  // model that can't explain (keypoints, segmentation, or one whose compile refused).
  const explained = await api.POST("/api/predict", {
    body: { image: photo },
    params: { query: { explain: true } },
  });
  const explanation = explained.data && "explanation" in explained.data ? explained.data.explanation : undefined;
  seen.explained = explanation
    ? {
        target: explanation.target,
        png: explanation.heatmap.startsWith("data:image/png;base64,"),
        size: [explanation.heatmap_size.width, explanation.heatmap_size.height],
      }
    : explained.error?.error.code;
  const explainedBatch = await api.POST("/api/predict/batch", {
    body: { items: [{ image: photo }] },
    params: { query: { explain: true } },
  });
  seen.batchExplained =
    explainedBatch.data?.results.map((r) => ("explanation" in r ? r.explanation?.target : "none")) ??
    explainedBatch.error?.error.code;
  // Feedback on an answer: its prediction_id when the server keeps feedback (FEEDBACK_DIR),
  // else the error saying it is off.
  const feedback = await api.POST("/api/feedback", {
    body: { prediction_id: json.data.prediction_id ?? "0".repeat(32), correct: true },
  });
  seen.feedback = feedback.data ? feedback.data.feedback : feedback.error?.error.code;

  const ready = await api.GET("/readyz");
  seen.ready = ready.data?.status;
  console.log(JSON.stringify(seen));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
