"""Developer tools: training and evaluating the embedded tiny-shapes model. Not part of the app package."""
